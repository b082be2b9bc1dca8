#!/usr/bin/env python3
"""A TCP proxy in front of PostgreSQL's Unix socket that holds every chunk for DELAY_MS in each
direction (so every database round trip takes 2 x DELAY_MS more), for the cluster bench: does a
slow database slow the downloads? Usage: pgdelay.py PORT_FILE UNIX_SOCKET DELAY_MS"""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    """Copy READER to WRITER, each chunk DELAY seconds after it arrived, in order."""
    q = asyncio.Queue()

    async def later():
        while True:
            t, data = await q.get()
            if data is None:
                break
            wait = t + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(later())
    while True:
        data = await reader.read(65536)
        await q.put((time.monotonic(), data or None))
        if not data:
            break
    await task


async def main():
    port_file, sock, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    delay = delay_ms / 1000

    async def serve(cr, cw):
        try:
            sr, sw = await asyncio.open_unix_connection(sock)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, sw, delay), pump(sr, cw, delay), return_exceptions=True)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    with open(port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
