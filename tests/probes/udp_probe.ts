/**
 * Run inside a test bed host (tests/_network.ts) on two hosts at once, to see
 * which directions of a link carry packets that need no answer: listens on
 * `<bindIp>:<port>`, sends `<count>` datagrams to `<peerIp>:<port>` over
 * `<ms>` milliseconds, then prints one JSON line with the addresses it
 * received datagrams from: `{"received":["10.1.2.3"],"sent":5}`.
 *
 * Usage: deno run -A udp_probe.ts <bindIp> <port> <peerIp> <count> <ms>
 */
import dgram from "node:dgram";

const [bindIp = "", portText = "", peerIp = "", countText = "5", msText = "1000"] = Deno.args;
const port = Number(portText);
const count = Number(countText);
const ms = Number(msText);
const received = new Set<string>();
let sent = 0;

const socket = dgram.createSocket("udp4");
socket.on("message", (_message, remote) => received.add(remote.address));
await new Promise<void>((resolve) => socket.bind(port, bindIp, resolve));
for (let i = 0; i < count; i++) {
  socket.send(`probe ${i}`, port, peerIp, (error) => {
    if (!error) sent++;
  });
  await new Promise((resolve) => setTimeout(resolve, ms / count));
}
socket.close();
console.log(JSON.stringify({ received: [...received], sent }));
