"""Add a fixed round-trip time to TCP connections, for the shaped-link benchmarks.

Usage: python3 rtt_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Every connection accepted on LISTEN_HOST:LISTEN_PORT is forwarded to TARGET_HOST:TARGET_PORT.
Each chunk read from either side is written to the other side DELAY_MS milliseconds after it
was read, so a request and its response together gain 2 x DELAY_MS. Chunks wait in a queue
with their due time instead of stalling the reader, so the delay does not cut throughput, and
they leave in the order they arrived. The test machine's kernel has no `tc netem`, which is
why the delay comes from here while `tc tbf` on a veth pair limits the rate.

The kernel still acknowledges segments at once, so TCP measures the short RTT of the veth
link, and slow start and window growth are faster than on a real 20 ms path. Request-response
round trips, which dominate lazy pulling, see the full delay.
"""

import asyncio
import sys
import time

CHUNK_BYTES = 64 * 1024
# Bound on chunks waiting in one direction (16 MiB at most), far above the bandwidth-delay
# product of the links this is used on (100 Mbit/s x 10 ms = 125 kB).
MAX_QUEUED_CHUNKS = 256


async def pump(source, sink, delay_seconds):
    """Copy bytes from source to sink, each chunk delay_seconds after it was read."""
    queue = asyncio.Queue(MAX_QUEUED_CHUNKS)

    async def read_side():
        while True:
            data = await source.read(CHUNK_BYTES)
            await queue.put((time.monotonic() + delay_seconds, data))
            if not data:
                return

    async def write_side():
        while True:
            due, data = await queue.get()
            remaining = due - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
            if not data:
                # End of stream: pass the half-close on, so HTTP clients that send EOF still
                # get their response.
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(data)
            await sink.drain()

    await asyncio.gather(read_side(), write_side())


async def serve(listen_host, listen_port, target_host, target_port, delay_seconds):
    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as error:
            print(f"rtt_proxy: connecting to {target_host}:{target_port} failed: {error}", file=sys.stderr)
            client_writer.close()
            return
        directions = [
            asyncio.create_task(pump(client_reader, target_writer, delay_seconds)),
            asyncio.create_task(pump(target_reader, client_writer, delay_seconds)),
        ]
        # An end of stream in one direction leaves the other open (half-close), but a reset
        # or any other error on either side ends the whole connection.
        _, pending = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
        client_writer.close()
        target_writer.close()

    server = await asyncio.start_server(handle, listen_host, listen_port)
    print(f"rtt_proxy: {listen_host}:{listen_port} -> {target_host}:{target_port}, "
          f"{delay_seconds * 1000:.1f} ms each way", file=sys.stderr)
    async with server:
        await server.serve_forever()


def main(arguments):
    if len(arguments) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    listen_host, listen_port, target_host, target_port, delay_ms = arguments
    asyncio.run(serve(listen_host, int(listen_port), target_host, int(target_port), float(delay_ms) / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
