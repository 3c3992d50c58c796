"""Write the report of a benches/suite.sh run: markdown tables and SVG bar charts.

Usage: python3 report.py --meta META.jsonl --results RESULTS.jsonl --out REPORT.md
                         [--docs docs/benchmarks.md --img-dir docs/img]

META has one JSON object per line with a key (`image`, `profile` or `run`) and a value,
written by suite.sh; RESULTS one object per timed run. With --docs, the report replaces the
text between the suite's marker comments in that file (inserted before a `## zstd` section,
or at the end, the first time) and the charts go to --img-dir. Standard library only.
"""

import argparse
import json
import math
import os
import statistics
import sys
from html import escape

BEGIN = "<!-- benches/suite.sh report: begin (generated, reruns replace it) -->"
END = "<!-- benches/suite.sh report: end -->"
MB = 1e6

MODE_TEXT = {
    "full": "every blob fetched with curl in parallel (digests checked), unpacked with tar, whiteouts applied",
    "lazy": "`lazypull mount` of the `lazypull convert` output",
    "lazy-optimized": "`lazypull mount` of the image optimized for the workload",
    "lazy-zstd": "`lazypull mount` of `lazypull convert --compression zstd` output",
    "lazy-optimized-zstd": "`lazypull mount` of the optimized image, zstd",
    "ctr-remote-estargz": "`lazypull mount` of `ctr-remote image convert --estargz --oci` output",
    "warm": "workload on a local unpacked copy, page cache warm (the floor)",
}
COLORS = {
    "full": "#7f7f7f",
    "lazy": "#1f77b4",
    "lazy-optimized": "#2ca02c",
    "lazy-zstd": "#9467bd",
    "lazy-optimized-zstd": "#17becf",
    "ctr-remote-estargz": "#ff7f0e",
    "warm": "#bcbd22",
}


def load(meta_path, results_path):
    """Read the metadata (images, profiles, run) and the result rows."""
    images, profiles, run = [], [], {}
    with open(meta_path) as meta:
        for line in meta:
            item = json.loads(line)
            if item["key"] == "image":
                images.append(item["value"])
            elif item["key"] == "profile":
                profiles.append(item["value"])
            elif item["key"] == "run":
                run = item["value"]
    with open(results_path) as results:
        rows = [json.loads(line) for line in results if line.strip()]
    return images, profiles, run, rows


def summarize(rows):
    """Medians per (profile, image, mode): time to ready with min and max, bytes, requests, costs."""
    groups = {}
    for row in rows:
        groups.setdefault((row["profile"], row["image"], row["mode"]), []).append(row)
    summary = {}
    for key, group in groups.items():
        seconds = [row["seconds"] for row in group]

        def median_of(field):
            values = [row[field] for row in group if field in row]
            return statistics.median(values) if values else None

        summary[key] = {
            "runs": len(group),
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "bytes": median_of("registry_bytes"),
            "requests": median_of("registry_requests"),
            "rss_kib": median_of("lazypull_rss_kib"),
            "cpu_s": median_of("lazypull_cpu_s"),
            "client_cpu_s": median_of("client_cpu_s"),
        }
    return summary


def profile_text(profile):
    """Describe a profile's shaping and its check in one table row."""
    measured = profile.get("measured", {})
    if profile["name"] == "loopback":
        nominal_rtt = nominal_rate = "-"
    else:
        nominal_rtt = f"{profile['nominal_rtt_ms']:g} ms"
        nominal_rate = profile["nominal_rate"]
    # On loopback the difference of two sub-millisecond medians is noise: only the request
    # time is shown.
    rtt = f"{measured['rtt_ms']:.2f} ms" if measured and profile["name"] != "loopback" else "-"
    rate = f"{measured['rate_bits'] / 1e6:.0f} Mbit/s" if measured else "-"
    status = f"skipped: {profile['skipped']}" if profile.get("skipped") else "measured"
    shaper = {"none": "none", "netem": "tc netem (rate, delay)",
              "tbf+proxy": "tc tbf (rate) + benches/rtt_proxy.py (delay)"}.get(profile["shaper"], profile["shaper"])
    request = f"{measured['request_ms']:.2f} ms ({measured['registry_ms']:.2f} ms)" if measured else "-"
    return (f"| {profile['name']} | {shaper} | {nominal_rtt} | {rtt} | {request} | {nominal_rate} | {rate} "
            f"| {status} |")


def number(value, scale=1.0, digits=1):
    return "-" if value is None else f"{value / scale:.{digits}f}"


def ratio(value, reference):
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def image_tables(image, profiles, modes, summary):
    """Markdown tables of one image, one per measured profile."""
    lines = []
    for profile in profiles:
        if profile.get("skipped"):
            continue
        name = profile["name"]
        present = [mode for mode in modes if (name, image["name"], mode) in summary]
        if not present:
            continue
        full = summary.get((name, image["name"], "full"), {}).get("median_s")
        warm = summary.get((name, image["name"], "warm"), {}).get("median_s")
        lines.append(f"{image['name']}, {name}:")
        lines.append("")
        lines.append("| mode | time to ready, median (min-max) s | / full | / warm | MB fetched | / read | requests "
                     "| lazypull peak RSS MiB | lazypull CPU s | client CPU s |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode in present:
            item = summary[(name, image["name"], mode)]
            lines.append(
                f"| {mode} | {item['median_s']:.2f} ({item['min_s']:.2f}-{item['max_s']:.2f}) "
                f"| {ratio(item['median_s'], full)} | {ratio(item['median_s'], warm)} "
                f"| {number(item['bytes'], MB)} | {ratio(item['bytes'], image.get('bytes_read'))} "
                f"| {number(item['requests'], digits=0)} "
                f"| {number(item['rss_kib'], 1024, 0)} | {number(item['cpu_s'], digits=2)} "
                f"| {number(item['client_cpu_s'], digits=2)} |")
        lines.append("")
    return lines


def nice_ceiling(value):
    """Return the smallest round axis maximum (1 to 10 times a power of ten) of at least value."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def bar_chart(title, unit, groups, modes, values, digits):
    """Return an SVG grouped bar chart: one group per profile, one bar per mode."""
    bar, gap, left, top, height = 18, 26, 60, 40, 220
    group_width = bar * len(modes) + gap
    width = max(540, left + group_width * len(groups) + 20)
    peak = nice_ceiling(1.2 * max([v for v in values.values() if v is not None] + [0.0]))
    columns = max(1, int((width - left) // 170))
    legend_height = 20 * ((len(modes) + columns - 1) // columns)
    total_height = top + height + 40 + legend_height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
           f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{total_height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">{escape(title)}</text>',
           f'<text x="8" y="{top + height / 2}" transform="rotate(-90 8,{top + height / 2})" '
           f'text-anchor="middle" dominant-baseline="hanging">{escape(unit)}</text>']

    # Grid lines and axis labels.
    for step in range(5):
        value = peak * step / 4
        y = top + height - height * step / 4
        out.append(f'<line x1="{left - 4}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.{digits}f}</text>')

    # One group of bars per profile, each bar labelled with its value.
    for g, group in enumerate(groups):
        x0 = left + g * group_width + gap / 2
        for m, mode in enumerate(modes):
            value = values.get((group, mode))
            if value is None:
                continue
            bar_height = height * value / peak
            x = x0 + m * bar
            y = top + height - bar_height
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2}" height="{bar_height:.1f}" '
                       f'fill="{COLORS.get(mode, "#444")}"><title>{escape(mode)}: {value:.{digits}f} {escape(unit)}</title></rect>')
            out.append(f'<text x="{x + (bar - 2) / 2:.1f}" y="{y - 3:.1f}" text-anchor="start" font-size="9" '
                       f'transform="rotate(-90 {x + (bar - 2) / 2:.1f},{y - 3:.1f})" dominant-baseline="middle">'
                       f'{value:.{digits}f}</text>')
        out.append(f'<text x="{x0 + bar * len(modes) / 2:.1f}" y="{top + height + 16}" text-anchor="middle">'
                   f'{escape(group)}</text>')

    # The legend, below the groups.
    for m, mode in enumerate(modes):
        x = left + (m % columns) * 170
        y = top + height + 36 + 20 * (m // columns)
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{COLORS.get(mode, "#444")}"/>')
        out.append(f'<text x="{x + 16}" y="{y}">{escape(mode)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def charts(image, profiles, modes, summary, img_dir):
    """Write the time and bytes charts of one image; return their file names."""
    names = [p["name"] for p in profiles if not p.get("skipped")]
    present = [m for m in modes if any((p, image, m) in summary for p in names)]
    times = {(p, m): summary[(p, image, m)]["median_s"] for p in names for m in present if (p, image, m) in summary}
    sent = {(p, m): summary[(p, image, m)]["bytes"] / MB for p in names for m in present
            if (p, image, m) in summary and m != "warm"}
    files = []
    for kind, title, unit, values, digits in [
        ("time", f"{image}: time to ready, median", "seconds", times, 2),
        ("bytes", f"{image}: bytes fetched from the registry, median", "MB", sent, 1),
    ]:
        file_name = f"suite-{image}-{kind}.svg"
        chart_modes = [m for m in present if kind == "time" or m != "warm"]
        with open(os.path.join(img_dir, file_name), "w") as svg:
            svg.write(bar_chart(title, unit, names, chart_modes, values, digits))
        files.append(file_name)
    return files


def render_header(run):
    """Return the lines naming the command, the machine, the versions and the modes."""
    machine = run.get("machine", {})
    kind = "quick mode" if run.get("quick") else "full run"
    lines = [
        f"`benches/suite.sh` ({kind}), raw results in `{run.get('results', '?')}`. "
        f"Command: `{run.get('command', '?')}`. Wall time {run.get('wall_s', 0):.0f} s. "
        f"{run.get('runs')} runs per mode, rounds interleave the modes.",
        "",
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu')}), {machine.get('memory')} RAM, "
        f"Linux {machine.get('kernel')}. Load average (1, 5, 15 min): {machine.get('load_start')} at the "
        f"start, {machine.get('load_end')} at the end.",
        "",
    ]
    versions = run.get("versions", {})
    lines.append("Versions: " + "; ".join(f"{name} {value}" for name, value in versions.items() if value) + ".")
    if run.get("mount_args"):
        lines.append(f"Every timed mount had the options `{run['mount_args']}`.")
    lines.append("")

    lines.append("Time to ready runs from the start of the pull or mount to the workload's readiness line, "
                 "or its exit when it has none. MB fetched and requests count the GET and HEAD requests in "
                 "the registry's access log until ready. lazypull peak RSS (VmHWM) and CPU s (user + system) "
                 "belong to the serving process, read from /proc before unmount. Client CPU s is the CPU time "
                 "of the processes the script waited for. For the full pull these are curl, tar, unpigz and "
                 "the workload; for the lazy modes `lazypull mount` and the workload. / read divides MB "
                 "fetched by the bytes the workload reads (the image table says how they were measured).")
    lines.append("")
    for mode in run.get("modes", []):
        lines.append(f"- `{mode}`: {MODE_TEXT.get(mode, mode)}")
    lines.append("")
    return lines


def render_profiles(profiles, images, run):
    """Return the lines of the profile checks, the skipped full pulls and the image table."""
    lines = []
    names = {image["name"] for image in images}
    skipped = [name for name in run.get("skipped_full_on_100mbit") or [] if name in names]
    if skipped and any(profile["name"] == "100mbit-20ms" for profile in profiles):
        lines.append("The full pull of " + ", ".join(skipped) + " is not run on 100mbit-20ms, because one run "
                     "takes minutes. `--all` runs it.")
        lines.append("")

    lines.append("Network profiles, each checked before its runs. The script times twenty 1-byte range requests "
                 "(connect to first byte) through the link and twenty made at the registry directly. The "
                 "measured RTT is the difference of the two minimums, and the range request column gives the "
                 "medians. The rate is that of one 100 MB download through the link. A profile whose RTT or "
                 "rate is more than 30% off its nominal value is skipped.")
    lines.append("")
    lines.append("| profile | shaping | nominal RTT | measured RTT | range request (at the registry) "
                 "| nominal rate | measured rate | status |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for profile in profiles:
        lines.append(profile_text(profile))
    lines.append("")
    loads = [f"{p['name']} {p['load_before']} before, {p['load_after']} after" for p in profiles if p.get("load_before")]
    if loads:
        lines.append("Load average per profile: " + "; ".join(loads) + ".")
        lines.append("")

    lines.append("| image | workload | ready when | gzip MB (lazy image MB) | unpacked MB | files opened (MB) "
                 "| bytes read | optimized with |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for image in images:
        argv = " ".join(image["argv"])
        if len(argv) > 70:
            argv = argv[:67] + "..."
        sizes = image.get("layer_bytes", {})
        read = "-"
        if image.get("bytes_read") is not None:
            read = f"{image['bytes_read'] / MB:.1f} MB ({image.get('read_by', 'bench.json')})"
        ready = f"line with `{image['ready']}`" if image.get("ready") else "exit"
        lines.append(f"| {image['name']} | `{argv}` | {ready} | {number(sizes.get('full'), MB)} "
                     f"({number(sizes.get('lazy'), MB)}) | {number(image.get('unpacked_bytes'), MB)} "
                     f"| {image['opened']['files']} ({image['opened']['bytes'] / MB:.1f}) | {read} "
                     f"| {image.get('optimized_by', '-')} |")
    lines.append("")
    return lines


def render_size_comparison(profiles, summary):
    """Return a line comparing synthetic-5g with synthetic-500m per profile, when both ran."""
    parts = []
    for profile in profiles:
        for mode in ("lazy-optimized", "lazy"):
            small = summary.get((profile["name"], "synthetic-500m", mode))
            large = summary.get((profile["name"], "synthetic-5g", mode))
            if small and large:
                parts.append(f"{profile['name']} {mode} {large['median_s'] / small['median_s']:.2f}")
    if not parts:
        return []
    return ["Time to ready of synthetic-5g divided by that of synthetic-500m (same read set): "
            + ", ".join(parts) + ".", ""]


def render(images, profiles, run, rows, img_dir):
    """Return the markdown section between the markers."""
    summary = summarize(rows)
    modes = run.get("modes", [])
    lines = [BEGIN, "### Latest suite run", ""]
    lines.extend(render_header(run))
    lines.extend(render_profiles(profiles, images, run))
    lines.extend(render_size_comparison(profiles, summary))
    for image in images:
        lines.append(f"#### {image['name']}")
        lines.append("")
        lines.extend(image_tables(image, profiles, modes, summary))
        if img_dir:
            for file_name in charts(image["name"], profiles, modes, summary, img_dir):
                lines.append(f"![{file_name}](img/{file_name})")
            lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(docs_path, section):
    """Replace the suite's section in docs_path, or insert it before `## zstd` or at the end."""
    text = open(docs_path).read() if os.path.exists(docs_path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        before = text[: text.index(BEGIN)]
        after = text[text.index(END) + len(END):].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    elif "\n## zstd" in text:
        at = text.index("\n## zstd") + 1
        text = text[:at] + section + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(docs_path, "w") as docs:
        docs.write(text)


def main():
    parser = argparse.ArgumentParser(description="Write the report of a benches/suite.sh run.")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--docs")
    parser.add_argument("--img-dir")
    arguments = parser.parse_args()
    images, profiles, run, rows = load(arguments.meta, arguments.results)
    local_img_dir = os.path.join(os.path.dirname(os.path.abspath(arguments.out)), "img")
    # A run without results (every profile skipped) still reports its profile checks, but
    # leaves the docs and their charts as they were.
    img_dir = (arguments.img_dir if rows else None) or local_img_dir
    os.makedirs(img_dir, exist_ok=True)
    section = render(images, profiles, run, rows, img_dir)
    with open(arguments.out, "w") as out:
        out.write(section)
    if not rows:
        print(f"report.py: no results; the profile checks are in {arguments.out}", file=sys.stderr)
        return 1
    if arguments.docs:
        splice(arguments.docs, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
