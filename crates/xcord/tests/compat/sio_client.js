// A Socket.IO client (socket.io-client 4) driven over standard input, for the
// compatibility tests: each input line is JSON, {"emit": EVENT, "data": DATA} or
// {"close": true}; each event the client sees is written to standard output as one JSON line,
// {"event": NAME, "data": DATA}, with "connect", "connect_error" and "disconnect" among them.
//
//   node sio_client.js URL auth|header|none TOKEN polling|websocket
//
// URL may end in a namespace (http://127.0.0.1:PORT/compat/rtms). Exits within 120 s.
const { io } = require("socket.io-client");
const readline = require("readline");

const [url, mode, token, transport] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const options = { transports: [transport], reconnection: false, timeout: 10000, forceNew: true };
if (mode === "auth") options.auth = { token };
if (mode === "header") options.extraHeaders = { Authorization: `Bearer ${token}` };

const socket = io(url, options);
socket.on("connect", () => out({ event: "connect", data: { transport: socket.io.engine.transport.name } }));
socket.on("connect_error", (e) => out({ event: "connect_error", data: { message: String(e && e.message) } }));
socket.on("disconnect", (reason) => out({ event: "disconnect", data: { reason } }));
socket.onAny((event, data) => out({ event, data }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.emit) socket.emit(command.emit, command.data);
  if (command.close) {
    socket.close();
    setTimeout(() => process.exit(0), 100);
  }
});
lines.on("close", () => process.exit(0));
setTimeout(() => process.exit(3), 120000);
