// MCP clients that do no OAuth themselves, for tokend's end-to-end tests:
// the official TypeScript SDK's Client, over StreamableHTTPClientTransport
// to a URL (tokend's proxy) without an auth provider, or over
// StdioClientTransport launching a command (`tokend mcp NAME`). Whatever
// authorization there is, tokend adds it.
//
// Usage: node client.mjs CONFIG_JSON, with
//   {"sessions": [{"name": "proxy", "url": "http://127.0.0.1:P/mcp"},
//                 {"name": "direct", "url": "...", "headers": {...}},  // the harness's own check
//                 {"name": "bridge1", "command": "/path/tokend", "args": [...], "env": {...}}],
//    "intervalMs": 200,          // pause between one session's calls
//    "timeoutMs": 90000}         // one call's limit (a call may wait out a restart)
//
// Each session connects (initialize), lists the tools, then calls whoami and
// echo in turn until standard input ends. Lines printed to stdout, JSON:
//   {"event":"ready","count":N,"tools":[...]}          every session connected
//   {"event":"fail","session":S,"tool":T,"error":"..."}  one failed call
//   {"event":"progress","calls":N,"failures":N}           every 5 s
//   {"event":"done","calls":N,"failures":N,"sessions":{S:{calls,failures,tokens,maxMs,sub,resource}}}
// A session that cannot connect prints {"event":"error",...} and the process
// exits 1. stderr of the launched commands goes to this process's stderr.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const cfg = { intervalMs: 200, timeoutMs: 90000, ...JSON.parse(process.argv[2] || '{}') };

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function transportFor(s) {
  if (s.url) return new StreamableHTTPClientTransport(new URL(s.url), { requestInit: { headers: s.headers || {} } });
  return new StdioClientTransport({
    command: s.command,
    args: s.args || [],
    env: { ...process.env, ...(s.env || {}) },
    stderr: 'inherit',
  });
}

let stopping = false;
const totals = { calls: 0, failures: 0 };
const per = {};

async function connect(s) {
  const client = new Client({ name: `tokend-e2e-${s.name}`, version: '1.0.0' });
  await client.connect(transportFor(s), { timeout: cfg.timeoutMs });
  const { tools } = await client.listTools(undefined, { timeout: cfg.timeoutMs });
  per[s.name] = { calls: 0, failures: 0, tokens: new Set(), maxMs: 0, sub: '', resource: '' };
  return { s, client, tools: tools.map((t) => t.name).sort() };
}

function textOf(result) {
  return (result.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('');
}

async function loop({ s, client }) {
  const p = per[s.name];
  let n = 0;
  while (!stopping) {
    n += 1;
    const tool = n % 2 ? 'whoami' : 'echo';
    const text = `${s.name}-${n}`;
    const t0 = Date.now();
    try {
      const args = tool === 'echo' ? { text } : {};
      const r = await client.callTool({ name: tool, arguments: args }, undefined, { timeout: cfg.timeoutMs });
      if (r.isError) throw new Error(`tool error: ${textOf(r)}`);
      if (tool === 'echo' && textOf(r) !== text) throw new Error(`echo answered ${JSON.stringify(textOf(r))}, want ${text}`);
      if (tool === 'whoami') {
        const who = JSON.parse(textOf(r));
        if (who.jti) p.tokens.add(who.jti);
        p.sub = who.sub;
        p.resource = who.resource;
      }
    } catch (err) {
      p.failures += 1;
      totals.failures += 1;
      out({ event: 'fail', session: s.name, tool, error: String(err?.message || err) });
    }
    p.calls += 1;
    totals.calls += 1;
    p.maxMs = Math.max(p.maxMs, Date.now() - t0);
    if (!stopping) await new Promise((resolve) => { setTimeout(resolve, cfg.intervalMs); });
  }
}

let sessions;
try {
  sessions = await Promise.all(cfg.sessions.map(connect));
} catch (err) {
  out({ event: 'error', error: String(err?.message || err) });
  process.exit(1);
}
out({ event: 'ready', count: sessions.length, tools: sessions[0]?.tools || [] });

const progress = setInterval(() => out({ event: 'progress', ...totals }), 5000);
process.stdin.on('data', () => {});
process.stdin.on('end', () => { stopping = true; });
process.stdin.on('close', () => { stopping = true; });
process.stdin.resume();

await Promise.all(sessions.map(loop));
clearInterval(progress);
const summary = {};
for (const [name, p] of Object.entries(per)) summary[name] = { ...p, tokens: p.tokens.size };
out({ event: 'done', ...totals, sessions: summary });
await Promise.allSettled(sessions.map(({ client }) => client.close()));
process.exit(0);
