// The Socket.IO peer that chatcluster is benchmarked against (docs/benchmarks.md): Socket.IO 4
// with @socket.io/redis-adapter and the `redis` client, WebSocket transport only, the default
// namespace. Install with scripts/bench-setup.sh (npm ci from the committed lockfile); the
// benchmark (`chatcluster-bench`, bench/src/cluster.rs) starts it, one process per node:
//
//   PORT=3000 HOST=127.0.0.1 REDIS_URL=redis://127.0.0.1:6379/ NODE_NAME=sio-0 node server.js
//
// Events (what bench/src/adapter.rs speaks): client `join` <room> -> server `joined` <room>;
// client `send` {room, id, text} -> `io.to(room).emit("message", {room, from, id, text, ts})`
// to every member on every node, sender included (the same semantics as chatcluster's `send`).
// Sending to a room not joined -> `failure` {code: "not_joined"}. GET /healthz answers 200 for
// HAProxy's health check. SIGTERM/SIGINT close the server.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379/';
const nodeName = process.env.NODE_NAME || 'sio-0';

const httpServer = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  res.writeHead(404);
  res.end();
});

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on('error', (err) => console.error(`${nodeName}: redis pub: ${err.message}`));
  sub.on('error', (err) => console.error(`${nodeName}: redis sub: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  const io = new Server(httpServer, {
    transports: ['websocket'],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });

  io.on('connection', (socket) => {
    const user = String(socket.handshake.query.name || socket.id);
    socket.on('join', (room) => {
      if (typeof room !== 'string' || room.length === 0 || room.length > 128) {
        socket.emit('failure', { code: 'bad_request' });
        return;
      }
      socket.join(room);
      socket.emit('joined', room);
    });
    socket.on('send', (msg) => {
      if (!msg || typeof msg.room !== 'string' || !socket.rooms.has(msg.room)) {
        socket.emit('failure', { code: 'not_joined', id: msg && msg.id });
        return;
      }
      io.to(msg.room).emit('message', {
        room: msg.room,
        from: user,
        id: msg.id,
        text: msg.text,
        ts: Date.now(),
      });
    });
  });

  httpServer.listen(port, host, () => {
    console.error(`${nodeName}: listening on ${host}:${port}`);
  });

  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`${nodeName}: ${err.stack || err}`);
  process.exit(1);
});
