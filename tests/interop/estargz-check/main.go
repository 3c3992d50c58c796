// Command estargz-check reads an eStargz blob with the upstream estargz package
// (github.com/containerd/stargz-snapshotter/estargz, as packaged by Debian) so that
// lazypull's output can be checked by an independent reader.
//
// Usage:
//
//	estargz-check -blob FILE -toc-digest sha256:HEX
//	estargz-check build -tar FILE -out FILE [-chunk-size N] [-level N] [-zstd] [-prioritized a,b]
//
// The first form opens the blob (gzip or zstd:chunked), verifies the TOC JSON against the given
// digest, then prints one JSON object per TOC entry (chunk entries excluded), in TOC
// order. For regular files it reads the content chunk by chunk through the upstream
// reader, verifies every chunk against its chunkDigest, checks the whole-file digest when
// the TOC has one, and prints the content's sha256. Any failure prints a message to
// stderr and exits with status 1.
//
// The second form converts a plain tar into an eStargz blob with the upstream builder
// (estargz.Build) and prints {"tocDigest", "diffID", "size"} as one JSON line, so our
// reader can be tested against blobs that upstream wrote.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// entryReport is the JSON line printed for one TOC entry.
type entryReport struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Size     int64             `json:"size"`
	Mode     int64             `json:"mode"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	Uname    string            `json:"uname"`
	Gname    string            `json:"gname"`
	ModTime  string            `json:"modtime"`
	LinkName string            `json:"linkName"`
	DevMajor int               `json:"devMajor"`
	DevMinor int               `json:"devMinor"`
	Xattrs   map[string]string `json:"xattrs"`
	Digest   string            `json:"digest"`
	Sha256   string            `json:"sha256,omitempty"`
	Chunks   int               `json:"chunks"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "build" {
		if err := build(os.Args[2:], os.Stdout); err != nil {
			fail(err)
		}
		return
	}
	blobPath := flag.String("blob", "", "path of the eStargz blob")
	tocDigest := flag.String("toc-digest", "", "expected TOC digest, sha256:<hex>")
	flag.Parse()
	if *blobPath == "" || *tocDigest == "" {
		fail(errors.New("both -blob and -toc-digest are required"))
	}
	if err := run(*blobPath, *tocDigest, os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "estargz-check: %v\n", err)
	os.Exit(1)
}

func run(blobPath, tocDigestText string, out io.Writer) error {
	want, err := digest.Parse(tocDigestText)
	if err != nil {
		return fmt.Errorf("invalid -toc-digest %q: %w", tocDigestText, err)
	}
	file, err := os.Open(blobPath)
	if err != nil {
		return err
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return err
	}
	blob := io.NewSectionReader(file, 0, info.Size())

	reader, err := estargz.Open(blob, estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	verifier, err := reader.VerifyTOC(want)
	if err != nil {
		return fmt.Errorf("verify TOC: %w", err)
	}

	// The Reader resolves hard links and hides raw entries, so read the TOC again in
	// order, with the same decompressors, to report every entry as stored.
	toc, got, err := readRawTOC(blob)
	if err != nil {
		return fmt.Errorf("read raw TOC: %w", err)
	}
	if got != want {
		return fmt.Errorf("raw TOC digest %s differs from %s", got, want)
	}

	encoder := json.NewEncoder(out)
	for _, entry := range toc.Entries {
		if entry.Type == "chunk" {
			continue
		}
		report := entryReport{
			Name:     entry.Name,
			Type:     entry.Type,
			Size:     entry.Size,
			Mode:     entry.Mode,
			UID:      entry.UID,
			GID:      entry.GID,
			Uname:    entry.Uname,
			Gname:    entry.Gname,
			ModTime:  entry.ModTime3339,
			LinkName: entry.LinkName,
			DevMajor: entry.DevMajor,
			DevMinor: entry.DevMinor,
			Xattrs:   map[string]string{},
			Digest:   entry.Digest,
		}
		for key, value := range entry.Xattrs {
			report.Xattrs[key] = base64.StdEncoding.EncodeToString(value)
		}
		if entry.Type == "reg" {
			sum, chunks, err := readVerified(reader, verifier, entry)
			if err != nil {
				return fmt.Errorf("%s: %w", entry.Name, err)
			}
			report.Sha256 = sum
			report.Chunks = chunks
		}
		if err := encoder.Encode(report); err != nil {
			return err
		}
	}
	return nil
}

// readRawTOC parses the footer and TOC the way estargz.Open does, but returns the JTOC
// itself.
func readRawTOC(blob *io.SectionReader) (*estargz.JTOC, digest.Digest, error) {
	decompressors := []estargz.Decompressor{
		new(estargz.GzipDecompressor),
		new(estargz.LegacyGzipDecompressor),
		new(zstdchunked.Decompressor),
	}
	var errs []error
	for _, decompressor := range decompressors {
		footerSize := decompressor.FooterSize()
		if blob.Size() < footerSize {
			errs = append(errs, fmt.Errorf("blob of %d bytes is shorter than a %d-byte footer", blob.Size(), footerSize))
			continue
		}
		footer := make([]byte, footerSize)
		if _, err := blob.ReadAt(footer, blob.Size()-footerSize); err != nil {
			return nil, "", err
		}
		_, tocOffset, tocSize, err := decompressor.ParseFooter(footer)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if tocSize <= 0 {
			tocSize = blob.Size() - tocOffset - footerSize
		}
		if tocOffset < 0 || tocSize <= 0 || tocOffset+tocSize > blob.Size() {
			errs = append(errs, fmt.Errorf("TOC range %d+%d is outside the blob", tocOffset, tocSize))
			continue
		}
		toc, tocDigest, err := decompressor.ParseTOC(io.NewSectionReader(blob, tocOffset, tocSize))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return toc, tocDigest, nil
	}
	return nil, "", fmt.Errorf("no decompressor could read the TOC: %v", errs)
}

// readVerified reads a regular file chunk by chunk through the upstream reader, checks
// each chunk against its digest and returns the sha256 of the whole content and the
// number of chunks.
func readVerified(reader *estargz.Reader, verifier estargz.TOCEntryVerifier, entry *estargz.TOCEntry) (string, int, error) {
	whole := sha256.New()
	if entry.Size == 0 {
		return hex.EncodeToString(whole.Sum(nil)), 0, nil
	}
	file, err := reader.OpenFile(entry.Name)
	if err != nil {
		return "", 0, err
	}
	chunks := 0
	for offset := int64(0); offset < entry.Size; {
		chunk, ok := reader.ChunkEntryForOffset(entry.Name, offset)
		if !ok {
			return "", 0, fmt.Errorf("no chunk covers offset %d", offset)
		}
		if chunk.ChunkOffset != offset || chunk.ChunkSize <= 0 {
			return "", 0, fmt.Errorf("chunk at offset %d starts at %d with size %d", offset, chunk.ChunkOffset, chunk.ChunkSize)
		}
		data := make([]byte, chunk.ChunkSize)
		count, err := file.ReadAt(data, chunk.ChunkOffset)
		if count != len(data) {
			return "", 0, fmt.Errorf("short read of chunk at %d: %d of %d bytes: %v", offset, count, len(data), err)
		}
		chunkVerifier, err := verifier.Verifier(chunk)
		if err != nil {
			return "", 0, fmt.Errorf("chunk at %d: %w", offset, err)
		}
		if _, err := chunkVerifier.Write(data); err != nil {
			return "", 0, err
		}
		if !chunkVerifier.Verified() {
			return "", 0, fmt.Errorf("chunk at offset %d (blob offset %d, %d bytes) failed verification", offset, chunk.Offset, chunk.ChunkSize)
		}
		whole.Write(data)
		offset += chunk.ChunkSize
		chunks++
	}
	sum := whole.Sum(nil)
	if entry.Digest != "" {
		expected, err := digest.Parse(entry.Digest)
		if err != nil {
			return "", 0, fmt.Errorf("invalid file digest %q: %w", entry.Digest, err)
		}
		if expected.Encoded() != hex.EncodeToString(sum) {
			return "", 0, fmt.Errorf("content sha256 %x differs from TOC digest %s", sum, entry.Digest)
		}
	}
	return hex.EncodeToString(sum), chunks, nil
}

// zstdCompression pairs the zstd:chunked compressor and decompressor, which together
// satisfy estargz.Compression.
type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// build converts a tar file into an eStargz blob with estargz.Build.
func build(args []string, out io.Writer) error {
	flags := flag.NewFlagSet("build", flag.ContinueOnError)
	tarPath := flags.String("tar", "", "path of the uncompressed input tar")
	outPath := flags.String("out", "", "path of the eStargz blob to write")
	chunkSize := flags.Int("chunk-size", 0, "chunk size in bytes (0: upstream default)")
	level := flags.Int("level", 0, "compression level (0: upstream default)")
	useZstd := flags.Bool("zstd", false, "write zstd:chunked instead of gzip")
	prioritized := flags.String("prioritized", "", "comma-separated prioritized file paths")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *tarPath == "" || *outPath == "" {
		return errors.New("build needs -tar and -out")
	}
	input, err := os.Open(*tarPath)
	if err != nil {
		return err
	}
	defer input.Close()
	info, err := input.Stat()
	if err != nil {
		return err
	}

	var options []estargz.Option
	if *chunkSize > 0 {
		options = append(options, estargz.WithChunkSize(*chunkSize))
	}
	if *level != 0 {
		options = append(options, estargz.WithCompressionLevel(*level))
	}
	if *useZstd {
		compressionLevel := *level
		if compressionLevel == 0 {
			compressionLevel = 3
		}
		compression := zstdCompression{
			Compressor:   &zstdchunked.Compressor{CompressionLevel: zstd.EncoderLevelFromZstd(compressionLevel)},
			Decompressor: new(zstdchunked.Decompressor),
		}
		options = append(options, estargz.WithCompression(compression))
	}
	if *prioritized != "" {
		options = append(options, estargz.WithPrioritizedFiles(strings.Split(*prioritized, ",")))
	}

	blob, err := estargz.Build(io.NewSectionReader(input, 0, info.Size()), options...)
	if err != nil {
		return fmt.Errorf("estargz.Build: %w", err)
	}
	defer blob.Close()
	output, err := os.Create(*outPath)
	if err != nil {
		return err
	}
	size, err := io.Copy(output, blob)
	if closeErr := output.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", *outPath, err)
	}
	return json.NewEncoder(out).Encode(map[string]interface{}{
		"tocDigest": blob.TOCDigest().String(),
		"diffID":    blob.DiffID().String(),
		"size":      size,
	})
}
