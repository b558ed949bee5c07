// An independent OPC UA server for the agent's interop tests (node-opcua, not asyncua).
//
// It checks what strict plant servers check: the client certificate must be trusted (or, with
// --trust auto, is accepted on first sight), its subjectAltName URI must equal the applicationUri
// the client announces (BadCertificateUriInvalid), user names and passwords are verified.
//
//   node server.js --port N --pki DIR [--trust auto|explicit] [--trust-client FILE.der]...
//                  [--user NAME:PASSWORD] [--no-anonymous]
//
// --trust explicit: only certificates in DIR/trusted/certs are accepted; --trust-client copies a
// client certificate there before the start, as a server administrator would.
// Listens on 127.0.0.1 only. Prints `READY node-opcua <endpoint> certificate=<server cert PEM>` on
// stdout when it serves;
// stops on SIGTERM/SIGINT or when its standard input closes (the test process went away).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const {
  OPCUAServer,
  OPCUACertificateManager,
  SecurityPolicy,
  MessageSecurityMode,
  DataType,
  Variant,
} = require("node-opcua");

function parseArgs(argv) {
  const opts = { port: 0, pki: null, trust: "explicit", trustClient: [], users: [], anonymous: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--port") opts.port = Number(next());
    else if (a === "--pki") opts.pki = next();
    else if (a === "--trust") opts.trust = next();
    else if (a === "--trust-client") opts.trustClient.push(next());
    else if (a === "--user") opts.users.push(next());
    else if (a === "--no-anonymous") opts.anonymous = false;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.port || !opts.pki) throw new Error("--port and --pki are required");
  if (!["auto", "explicit"].includes(opts.trust)) throw new Error("--trust auto|explicit");
  return opts;
}

// Values like the pump skid profile's (firmware_configs/acme_pump_opcua.yaml), slowly moving.
const VARIABLES = [
  { id: "PumpSkid.Motor.Current", name: "Current", base: 42.0, swing: 2.0 },
  { id: "PumpSkid.Motor.Voltage", name: "Voltage", base: 400.0, swing: 3.0 },
  { id: "PumpSkid.Discharge.Pressure", name: "Pressure", base: 6.2, swing: 0.2 },
];

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(path.join(opts.pki, "trusted", "certs"), { recursive: true });
  for (const file of opts.trustClient) {
    // What a server administrator does with the agent's client.der.
    fs.copyFileSync(file, path.join(opts.pki, "trusted", "certs", path.basename(file)));
  }
  const certificateManager = new OPCUACertificateManager({
    rootFolder: opts.pki,
    automaticallyAcceptUnknownCertificate: opts.trust === "auto",
    disableFileWatchers: true,
  });
  await certificateManager.initialize();

  const users = new Map(
    opts.users.map((u) => {
      const at = u.indexOf(":");
      return [u.slice(0, at), u.slice(at + 1)];
    }),
  );
  const server = new OPCUAServer({
    port: opts.port,
    host: "127.0.0.1",
    hostname: "localhost",
    serverCertificateManager: certificateManager,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [
      MessageSecurityMode.None,
      MessageSecurityMode.Sign,
      MessageSecurityMode.SignAndEncrypt,
    ],
    allowAnonymous: opts.anonymous,
    userManager: {
      isValidUser: (name, password) => users.has(name) && users.get(name) === password,
    },
    serverInfo: { applicationUri: "urn:edge-agent-tests:node-opcua-server" },
    buildInfo: { productName: "edge-agent interop server" },
  });
  await server.initialize();

  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:acme-fluidtech:pumpguard");
  const skid = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "PumpSkid" });
  const started = Date.now();
  for (const v of VARIABLES) {
    ns.addVariable({
      componentOf: skid,
      nodeId: `s=${v.id}`,
      browseName: v.name,
      dataType: "Double",
      minimumSamplingInterval: 100,
      value: {
        get: () => {
          const t = (Date.now() - started) / 1000;
          return new Variant({ dataType: DataType.Double, value: v.base + v.swing * Math.sin(t) });
        },
      },
    });
  }

  await server.start();
  // The same shape as the simulators' READY lines (simulators/process.py).
  process.stdout.write(
    `READY node-opcua opc.tcp://127.0.0.1:${opts.port} certificate=${server.certificateFile}\n`,
  );

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await server.shutdown(0);
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`server.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});
