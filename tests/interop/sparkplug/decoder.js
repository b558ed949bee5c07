// An independent Sparkplug B host for the agent's interop tests: subscribes to spBv1.0/# on the
// broker with the `mqtt` package, decodes every payload with Eclipse Tahu's `sparkplug-payload`
// and prints one JSON line per message on stdout. Lines on stdin ask it to publish:
//   {"publish": {"topic": T, "payload": <Tahu payload object>}}  encoded by Tahu's encoder
//   {"publish_raw": {"topic": T, "hex": H}}                        bytes as they are (hostile)
// Usage: node decoder.js PORT
"use strict";
const mqtt = require("mqtt");
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const port = Number(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// Long values (Int64/UInt64/DateTime) become numbers: the test's values fit in 53 bits.
function plain(value) {
  if (value === null || value === undefined) return value;
  if (typeof value === "object" && typeof value.toNumber === "function") return value.toNumber();
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    const o = {};
    for (const [k, v] of Object.entries(value)) o[k] = plain(v);
    return o;
  }
  return value;
}

// A persistent session (clean: false): across a broker restart with persistence on, the broker
// keeps the subscription and queues what the agent publishes before this host is back.
const client = mqtt.connect({
  host: "127.0.0.1", port, protocolVersion: 4, clean: false,
  clientId: `tahu-host-${process.pid}`, reconnectPeriod: 200, connectTimeout: 5000,
});
client.on("connect", () => {
  client.subscribe("spBv1.0/#", { qos: 1 }, (err) => {
    out(err ? { event: "subscribe_failed", error: String(err) } : { event: "subscribed" });
  });
});
client.on("close", () => out({ event: "closed" }));
client.on("error", (err) => out({ event: "error", error: String(err) }));
client.on("message", (topic, raw, packet) => {
  try {
    const payload = plain(sparkplug.decodePayload(raw));
    out({ topic, qos: packet.qos, retain: packet.retain, payload });
  } catch (err) {
    out({ topic, qos: packet.qos, decode_error: String(err), hex: raw.toString("hex") });
  }
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.publish) {
    const bytes = Buffer.from(sparkplug.encodePayload(cmd.publish.payload));
    client.publish(cmd.publish.topic, bytes, { qos: 0 }, () => out({ event: "published" }));
  } else if (cmd.publish_raw) {
    const bytes = Buffer.from(cmd.publish_raw.hex, "hex");
    client.publish(cmd.publish_raw.topic, bytes, { qos: 0 }, () => out({ event: "published" }));
  }
}).on("close", () => client.end(true, () => process.exit(0)));
