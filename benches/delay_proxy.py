"""A TCP proxy that delays every byte toward the client, for the shaped-link benchmark.

Usage: python3 delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_PORT DELAY_SECONDS

Connections to LISTEN_HOST:LISTEN_PORT are forwarded to 127.0.0.1:TARGET_PORT. Bytes from the
target reach the client DELAY_SECONDS after they arrived; bytes from the client are forwarded
at once. Each piece keeps its order and the link keeps its throughput, because pieces are
queued with their due time instead of delaying the reader. The Linux kernel of the test machine
has no `tc netem`, so latency comes from here and rate limits from `tc tbf`.
"""

import asyncio
import sys
import time


async def forward(reader, writer, delay):
    queue = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                return

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(receive(), deliver())


async def main(listen_host, listen_port, target_port, delay):
    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError as error:
            print(f"failed to connect to 127.0.0.1:{target_port}: {error}", file=sys.stderr)
            client_writer.close()
            return
        await asyncio.gather(
            forward(client_reader, upstream_writer, 0.0),
            forward(upstream_reader, client_writer, delay),
            return_exceptions=True,
        )
        client_writer.close()
        upstream_writer.close()

    server = await asyncio.start_server(handle, listen_host, listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port, target, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(host, port, target, seconds))
