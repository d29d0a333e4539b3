// capsule's Tasks extension (io.modelcontextprotocol/tasks, SEP-2663) driven by the official
// tasks client, @modelcontextprotocol/ext-tasks 0.2.x, on top of the TypeScript SDK v2 Client
// (@modelcontextprotocol/client 2.x) pinned to 2026-07-28, over Streamable HTTP.  The SDK
// Client connects and discovers (it sees the extension in server/discover); ext-tasks then
// sends tools/call and tasks/* itself, parses CreateTaskResult and DetailedTask, polls at the
// server's pollIntervalMs, settles and cancels.  ext-tasks needs the host to carry its
// 2026-07-28 task requests (`rawDispatch`, as its README says: the SDK's typed surface has no
// tasks/*): here a plain fetch to the same endpoint with the headers SEP-2243 asks for.
//
// And 2025-11-25, where tasks are in core: the SDK 1.x Client's experimental tasks API
// (client.experimental.tasks: callToolStream with a `task` option, getTask, listTasks,
// cancelTask, getTaskResult) over stdio and HTTP.
// Run by `make interop-test` (node --test).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createTaskSessionFromClient, resultFromTaskOutcome } from "@modelcontextprotocol/ext-tasks/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as StdioV1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const CAPSULE = process.env.CAPSULE ?? new URL("../../build/capsule", import.meta.url).pathname;
const TOKEN = "interop-tasks-token";
const VERSION = "2026-07-28";
const TASKS = "io.modelcontextprotocol/tasks";

function startHttpServer(extraArgs = []) {
  const child = spawn(CAPSULE, ["serve", "--http", "127.0.0.1:0", "--workers", "2", "--no-store", ...extraArgs], {
    env: { ...process.env, CAPSULE_TOKEN: TOKEN },
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let log = "";
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (http:\/\/\S+)/);
      if (match) resolve({ child, url: match[1] });
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
}

// The host's request path for ext-tasks' 2026-07-28 task traffic: one POST per request,
// Mcp-Method and Mcp-Name as the transport spec says (Mcp-Name: the tool, or the task id).
function rawDispatchTo(url, log) {
  let nextId = 1;
  return async (request, options = {}) => {
    const message = { jsonrpc: "2.0", id: `tasks-${nextId++}`, ...request };
    const params = message.params ?? {};
    const name = message.method === "tools/call" ? params.name : params.taskId;
    log.push(message);
    const response = await fetch(url, {
      method: "POST",
      signal: options.signal,
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
        Authorization: `Bearer ${TOKEN}`,
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": message.method,
        ...(typeof name === "string" ? { "Mcp-Name": name } : {}),
      },
      body: JSON.stringify(message),
    });
    const text = await response.text();
    const body = response.headers.get("content-type")?.startsWith("text/event-stream")
      ? text.split("\n").filter((line) => line.startsWith("data: ") && line.length > 6)
        .map((line) => JSON.parse(line.slice(6))).find((m) => m.id === message.id)
      : JSON.parse(text);
    log.push(body);
    return "error" in body ? { kind: "error", error: body.error } : { kind: "result", result: body.result };
  };
}

describe("ext-tasks client over HTTP (2026-07-28)", () => {
  let server, client, session;
  const wire = [];
  before(async () => {
    server = await startHttpServer();
    client = new Client({ name: "capsule-interop-tasks", version: "1.0.0" },
                        { capabilities: {}, versionNegotiation: { mode: { pin: VERSION } } });
    await client.connect(new StreamableHTTPClientTransport(new URL(server.url), {
      requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } },
    }));
    session = createTaskSessionFromClient(client, {
      endpointId: "capsule-interop",
      rawDispatch: rawDispatchTo(server.url, wire),
      v2RequestFraming: {
        protocolVersion: VERSION,
        clientInfo: { name: "capsule-interop-tasks", version: "1.0.0" },
        clientCapabilities: { extensions: { [TASKS]: {} } },
      },
    });
  });
  after(async () => {
    await session?.close();
    await client?.close();
    server?.child.kill("SIGTERM");
  });

  test("the SDK sees the extension in server/discover", () => {
    assert.equal(client.getProtocolEra(), "modern");
    assert.deepEqual(client.getServerCapabilities()?.extensions?.[TASKS], {});
    assert.equal(session.capabilities.execution, true);
    assert.equal(session.capabilities.cancellation, true);
  });

  test("run_python_code becomes a task that ext-tasks polls to its result", async () => {
    wire.length = 0;
    const execution = await session.callTool("run_python_code", {
      python_code: "import time\ntime.sleep(1)\nprint('from a task')\n6 * 7",
    });
    assert.equal(execution.kind, "task");
    assert.match(execution.handle.taskId, /^[0-9a-f]{32}$/);
    const { outcome, lastTask } = await execution.settle();
    assert.equal(outcome.status, "completed", JSON.stringify(outcome));
    const result = resultFromTaskOutcome(outcome);
    assert.equal(result.structuredContent.return_value, "42");
    assert.equal(result.structuredContent.output, "from a task");
    assert.equal(lastTask?.status, "completed");
    assert.equal(lastTask?.suggestedPollIntervalMs ?? 250, 250);
    // What went over the wire: the call, then tasks/get polls of that task until it completed.
    const methods = wire.filter((m) => m.method).map((m) => m.method);
    assert.equal(methods[0], "tools/call");
    assert.ok(methods.slice(1).every((m) => m === "tasks/get") && methods.length >= 2, methods.join(","));
    assert.equal(wire[1].result.resultType, "task");
  });

  test("a run error is a completed task whose result says so", async () => {
    const execution = await session.callTool("run_python_code", { python_code: "1 / 0" });
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    assert.equal(outcome.result.structuredContent.status, "run-error");
    assert.match(outcome.result.structuredContent.error, /ZeroDivisionError/);
  });

  test("cancel stops the run and the task settles cancelled", async () => {
    const execution = await session.callTool("run_python_code", {
      python_code: "import time\ntime.sleep(60)",
    });
    assert.equal(execution.kind, "task");
    const taskId = execution.handle.taskId;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const started = Date.now();
    await execution.cancel();
    const view = await session.task(taskId).snapshot();
    assert.equal(view.status, "cancelled");
    // The worker was killed: a new call does not wait for the sleep.
    const next = await session.callTool("run_python_code", { python_code: "'after'" });
    const { outcome } = await next.settle();
    assert.equal(outcome.result.structuredContent.return_value, "after");
    assert.ok(Date.now() - started < 30000);
  });

  test("a task id the server never issued is an error, not a task", async () => {
    await assert.rejects(session.task("0".repeat(32)).snapshot());
  });
});

// 2025-11-25: tasks in core, through the SDK 1.x client.
for (const transport of ["stdio", "http"]) {
  describe(`SDK 1.x experimental tasks over ${transport} (2025-11-25)`, () => {
    let server, client;
    before(async () => {
      client = new ClientV1({ name: "capsule-interop-tasks-v1", version: "1.0.0" },
                            { capabilities: { tasks: { list: {}, cancel: {} } } });
      if (transport === "stdio") {
        await client.connect(new StdioV1({ command: CAPSULE, args: ["serve", "--stdio", "--no-store"],
                                           stderr: "ignore" }));
      } else {
        server = await startHttpServer();
        await client.connect(new HttpV1(new URL(server.url), {
          requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } },
        }));
      }
    });
    after(async () => {
      await client?.close();
      server?.child.kill("SIGTERM");
    });

    test("the server declares task-augmented tools/call, run_python_code supports it", async () => {
      assert.ok(client.getServerCapabilities()?.tasks?.requests?.tools?.call);
      const { tools } = await client.listTools();
      const run = tools.find((t) => t.name === "run_python_code");
      assert.equal(run.execution?.taskSupport, "optional");
    });

    test("callToolStream: the task is created, polled and its result fetched", async () => {
      const kinds = [];
      let result, taskId;
      for await (const message of client.experimental.tasks.callToolStream(
        { name: "run_python_code", arguments: { python_code: "import time\ntime.sleep(1)\n6 * 7" } },
        CallToolResultSchema, { task: { ttl: 60000 } })) {
        kinds.push(message.type);
        if (message.type === "taskCreated") taskId = message.task.taskId;
        if (message.type === "result") result = message.result;
        if (message.type === "error") throw message.error;
      }
      assert.equal(kinds[0], "taskCreated");
      assert.ok(kinds.includes("taskStatus"));
      assert.equal(kinds.at(-1), "result");
      assert.equal(result.structuredContent.return_value, "42");
      assert.equal(result._meta?.["io.modelcontextprotocol/related-task"]?.taskId, taskId);
      const task = await client.experimental.tasks.getTask(taskId);
      assert.equal(task.status, "completed");
      const { tasks } = await client.experimental.tasks.listTasks();
      assert.ok(tasks.some((t) => t.taskId === taskId), JSON.stringify(tasks));
    });

    test("cancelTask stops a running task; its result is an error", async () => {
      let taskId;
      const stream = client.experimental.tasks.callToolStream(
        { name: "run_python_code", arguments: { python_code: "import time\ntime.sleep(60)" } },
        CallToolResultSchema, { task: {} });
      const first = await stream.next();
      assert.equal(first.value.type, "taskCreated");
      taskId = first.value.task.taskId;
      await new Promise((resolve) => setTimeout(resolve, 500));
      const started = Date.now();
      const cancelled = await client.experimental.tasks.cancelTask(taskId);
      assert.equal(cancelled.status, "cancelled");
      await stream.return();
      await assert.rejects(client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema));
      // Cancelling again: a task in a terminal status cannot be cancelled.
      await assert.rejects(client.experimental.tasks.cancelTask(taskId), /terminal/);
      // The worker was killed: the next call does not wait for the sleep.
      const next = await client.callTool({ name: "run_python_code", arguments: { python_code: "'after'" } });
      assert.equal(next.structuredContent.return_value, "after");
      assert.ok(Date.now() - started < 30000);
    });

    test("an unknown task id is an error", async () => {
      await assert.rejects(client.experimental.tasks.getTask("0".repeat(32)));
    });
  });
}
