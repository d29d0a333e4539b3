// Runs the MCP conformance suite's server scenarios that apply to capsule
// against `capsule serve --http`.  The others exercise tools, resources and
// prompts of the suite's own reference server (docs/mcp.md lists them).
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const CAPSULE = process.env.CAPSULE ?? fileURLToPath(new URL("../../build/capsule", import.meta.url));
const CONFORMANCE = fileURLToPath(
  new URL("node_modules/@modelcontextprotocol/conformance/dist/index.js", import.meta.url));

export const SCENARIOS = [
  "server-initialize",
  "ping",
  "logging-set-level",
  "tools-list",
  "dns-rebinding-protection",
  "server-sse-multiple-streams",
  "server-sse-polling",
];

const server = spawn(CAPSULE, ["serve", "--http", "127.0.0.1:0", "--no-auth"],
                     { stdio: ["ignore", "ignore", "pipe"] });
const url = await new Promise((resolve, reject) => {
  let log = "";
  server.stderr.on("data", (chunk) => {
    log += chunk;
    const match = log.match(/listening on (http:\/\/\S+)/);
    if (match) resolve(match[1]);
  });
  server.on("exit", (code) => reject(new Error(`capsule serve exited ${code}: ${log}`)));
});

let failures = 0;
for (const scenario of SCENARIOS) {
  const run = spawnSync(process.execPath, [CONFORMANCE, "server", "--url", url, "--scenario", scenario],
                        { encoding: "utf8", timeout: 120000 });
  const output = (run.stdout + run.stderr).replace(/\x1b\[[0-9;]*m/g, "");
  const summary = output.match(/Passed: (\d+)\/(\d+), (\d+) failed, (\d+) warnings/);
  const passed = summary && summary[1] === summary[2] && summary[3] === "0";
  console.log(`${passed ? "pass" : "FAIL"}  ${scenario}  ${summary ? summary[0] : "(no summary)"}`);
  if (!passed) {
    failures++;
    console.log(output);
  }
}
server.kill("SIGTERM");
process.exit(failures ? 1 : 0);
