// mcp-conformance-client.mjs TOKEND GRANT [PROXY_URL]: the MCP client of
// scripts/mcp-conformance-client. It is the MCP TypeScript SDK's Client with
// no auth provider at all: it launches `TOKEND mcp GRANT` (the bridge from
// stdio to the grant's Streamable HTTP server, which adds the token), or
// with PROXY_URL speaks Streamable HTTP to the grant's proxy, and
// initializes, lists the tools and calls each one. Any error ends it with
// status 1. It needs Node >= 22 and the SDK that scripts/test-deps mcp
// installs into e2e/mcpconformance/node_modules (found from this file's
// place, so it runs from any directory).
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";

const [tokend, grant, proxyURL] = process.argv.slice(2);
if (!tokend || !grant) {
  console.error("usage: mcp-conformance-client.mjs TOKEND GRANT [PROXY_URL]");
  process.exit(2);
}

const sdk = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "e2e",
  "mcpconformance",
  "node_modules",
  "@modelcontextprotocol",
  "sdk",
  "dist",
  "esm",
);
const load = (path) => import(pathToFileURL(join(sdk, path)).href);
const { Client } = await load("client/index.js");
const { StdioClientTransport } = await load("client/stdio.js");
const { StreamableHTTPClientTransport } = await load(
  "client/streamableHttp.js",
);

// argumentsFor gives a tool the required arguments its input schema names,
// with a plain value of each property's type.
function argumentsFor(tool) {
  const schema = tool.inputSchema || {};
  const args = {};
  for (const name of schema.required || []) {
    const type = schema.properties?.[name]?.type;
    args[name] =
      type === "number" || type === "integer"
        ? 1
        : type === "boolean"
          ? true
          : type === "object"
            ? {}
            : type === "array"
              ? []
              : "conformance";
  }
  return args;
}

const say = (msg) => console.error(`mcp-conformance-client.mjs: ${msg}`);

// grantState is the grant's state as `tokend status GRANT --json` says.
function grantState() {
  try {
    return JSON.parse(execFileSync(tokend, ["status", grant, "--json"])).state;
  } catch {
    return "";
  }
}

// stepUps runs call; through the proxy, which passes a 403
// insufficient_scope on once it has recorded the step-up, it waits for the
// grant to be valid again (a person authorized the wider scopes) and
// calls again, at most twice, as a person retrying would. The bridge
// does that waiting itself.
async function stepUps(call) {
  for (let retry = 0; ; retry++) {
    try {
      return await call();
    } catch (err) {
      if (!proxyURL || err?.code !== 403 || retry >= 2) throw err;
      say(`403 from the proxy (${err.message}); waiting for the grant`);
      const end = Date.now() + 30_000;
      while (grantState() !== "valid" && Date.now() < end) await sleep(200);
    }
  }
}

const transport = proxyURL
  ? new StreamableHTTPClientTransport(new URL(proxyURL))
  : new StdioClientTransport({
      command: tokend,
      args: ["mcp", grant],
      env: { ...process.env },
      stderr: "inherit",
    });
const client = new Client(
  { name: "tokend-mcp-conformance-client", version: "1.0.0" },
  { capabilities: {} },
);

let status = 0;
try {
  await client.connect(transport);
  say(`initialized: server ${JSON.stringify(client.getServerVersion())}`);
  const { tools } = await stepUps(() => client.listTools());
  say(`tools: ${tools.map((t) => t.name).join(", ") || "none"}`);
  for (const tool of tools) {
    const result = await stepUps(() =>
      client.callTool({ name: tool.name, arguments: argumentsFor(tool) }),
    );
    if (result.isError) {
      throw new Error(
        `tool ${tool.name} answered an error: ${JSON.stringify(result.content)}`,
      );
    }
    say(`called ${tool.name}: ${JSON.stringify(result.content)}`);
  }
} catch (err) {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  status = 1;
} finally {
  await client.close().catch(() => {});
}
process.exit(status);
