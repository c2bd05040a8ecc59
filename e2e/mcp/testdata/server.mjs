// A real MCP server with OAuth, for tokend's end-to-end tests: everything
// that matters is the official TypeScript SDK's (@modelcontextprotocol/sdk,
// pinned in package-lock.json): McpServer with its Streamable HTTP
// transport in stateful mode (one transport per Mcp-Session-Id), the
// bearer-token middleware (requireBearerAuth, with expectedResource: a
// token whose audience is not this resource is refused 401 invalid_token),
// and the protected-resource metadata router (mcpAuthMetadataRouter,
// RFC 9728 at the path-inserted well-known location, named in the 401's
// WWW-Authenticate as resource_metadata). What is ours: the token verifier
// (the authorization server, e2e/oidc/server.mjs with jwtResources, issues
// RS256 JWT access tokens; they are checked against its JWKS, issuer and
// expiry, and their aud handed to the SDK as the token's resource) and the
// /_test routes.
//
// It serves two resources on one listener, each its own MCP server with its
// own metadata and audience: http://127.0.0.1:PORT/mcp and
// http://127.0.0.1:PORT/other/mcp, so a test holds a token for one that the
// other must refuse.
//
// Usage: node server.mjs [PORT] (0, the default, picks one). Once listening
// it prints one JSON line to stdout: {"url":"http://127.0.0.1:PORT/mcp",
// "other":"http://127.0.0.1:PORT/other/mcp"}. The resources answer 503
// until POST /_test/issuer {"issuer":"http://..."} names the authorization
// server (whose configuration needs the resource URLs, so it starts after).
//
// Tools: echo {text} answers the text; whoami answers the caller as the
// verified token says ({sub, client_id, resource, scopes, jti}; never the
// token itself).
//
// Test routes: GET /_test/stats answers, per resource path, the counts
// {requests, unauthorized, tool_calls, sessions, tokens (distinct jti seen),
// clients (distinct client_id)} and forbidden: requests refused 403.

import { randomUUID } from 'node:crypto';
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { mcpAuthMetadataRouter, getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

const SCOPE = 'mcp:tools';
const PATHS = ['/mcp', '/other/mcp'];

function log(...args) {
  process.stderr.write(`mcp-server: ${args.join(' ')}\n`);
}

const stats = Object.fromEntries(PATHS.map((p) => [p, {
  requests: 0, unauthorized: 0, forbidden: 0, tool_calls: 0, sessions: 0, tokens: new Set(), clients: new Set(),
}]));

const app = express();
app.disable('x-powered-by');

let base = '';
let configured = null; // { issuer, routers: Map path -> {auth}, meta: router }

// configure builds what needs the authorization server: its metadata (for
// the SDK's metadata router), its JWKS (for the verifier).
async function configure(issuer) {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`authorization server metadata: ${res.status}`);
  const asMeta = await res.json();
  if (asMeta.issuer !== issuer) throw new Error(`authorization server metadata names issuer ${asMeta.issuer}`);
  const jwks = createRemoteJWKSet(new URL(asMeta.jwks_uri));
  const meta = express.Router();
  const auth = new Map();
  for (const p of PATHS) {
    const resource = new URL(base + p);
    meta.use(mcpAuthMetadataRouter({
      oauthMetadata: asMeta,
      resourceServerUrl: resource,
      scopesSupported: [SCOPE],
      resourceName: `tokend e2e MCP server ${p}`,
    }));
    const verifier = {
      async verifyAccessToken(token) {
        let payload;
        try {
          ({ payload } = await jwtVerify(token, jwks, { issuer, typ: 'at+jwt' }));
        } catch (err) {
          throw new InvalidTokenError(`token refused: ${err.code || err.message}`);
        }
        const aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
        return {
          token,
          clientId: String(payload.client_id || ''),
          scopes: String(payload.scope || '').split(' ').filter(Boolean),
          expiresAt: payload.exp,
          resource: aud ? new URL(aud) : undefined,
          extra: { sub: payload.sub, jti: payload.jti },
        };
      },
    };
    auth.set(p, requireBearerAuth({
      verifier,
      requiredScopes: [SCOPE],
      resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(resource),
      expectedResource: resource,
    }));
  }
  configured = { issuer, meta, auth };
  log('configured with issuer', issuer);
}

// newServer is one MCP server (one per session, as the SDK's stateful
// example does) for resource path p.
function newServer(p) {
  const server = new McpServer({ name: `tokend-e2e${p.replace(/\//g, '-')}`, version: '1.0.0' });
  server.registerTool('echo', {
    description: 'Answers the text it is given.',
    inputSchema: { text: z.string() },
  }, async ({ text }) => {
    stats[p].tool_calls += 1;
    return { content: [{ type: 'text', text }] };
  });
  server.registerTool('whoami', {
    description: 'Answers who the verified access token says the caller is.',
    inputSchema: {},
  }, async (_args, extra) => {
    stats[p].tool_calls += 1;
    const a = extra.authInfo || {};
    const who = {
      sub: a.extra?.sub, client_id: a.clientId, resource: a.resource?.href, scopes: a.scopes, jti: a.extra?.jti,
    };
    return { content: [{ type: 'text', text: JSON.stringify(who) }] };
  });
  return server;
}

app.get('/_test/stats', (_req, res) => {
  const out = {};
  for (const [p, s] of Object.entries(stats)) {
    out[p] = { ...s, tokens: s.tokens.size, clients: s.clients.size };
  }
  res.json(out);
});

app.post('/_test/issuer', express.json(), async (req, res) => {
  try {
    await configure(String(req.body?.issuer || ''));
    res.json({ ok: true });
  } catch (err) {
    log('configure:', err.message);
    res.status(400).json({ error: err.message });
  }
});

app.use((req, res, next) => {
  if (!configured) {
    res.status(503).json({ error: 'not configured' });
    return;
  }
  configured.meta(req, res, next);
});

for (const p of PATHS) {
  const transports = new Map();
  const s = stats[p];
  const count = (req, res, next) => {
    s.requests += 1;
    res.on('finish', () => {
      if (res.statusCode === 401) s.unauthorized += 1;
      if (res.statusCode === 403) s.forbidden += 1;
    });
    next();
  };
  const auth = (req, res, next) => configured.auth.get(p)(req, res, next);
  const seen = (req, _res, next) => {
    if (req.auth?.extra?.jti) s.tokens.add(req.auth.extra.jti);
    if (req.auth?.clientId) s.clients.add(req.auth.clientId);
    next();
  };
  const existing = async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    const transport = sid && transports.get(sid);
    if (!transport) {
      res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: no valid session ID' }, id: null });
      return;
    }
    await transport.handleRequest(req, res);
  };
  app.post(p, count, auth, seen, express.json({ limit: '1mb' }), async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let transport = sid && transports.get(sid);
    if (!transport) {
      if (sid || !isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: no valid session ID' }, id: null });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, transport);
          s.sessions += 1;
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) transports.delete(transport.sessionId);
      };
      await newServer(p).connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  });
  app.get(p, count, auth, seen, existing);
  app.delete(p, count, auth, seen, existing);
}

const port = Number(process.argv[2] || 0);
const listener = app.listen(port, '127.0.0.1', () => {
  const a = listener.address();
  base = `http://127.0.0.1:${a.port}`;
  process.stdout.write(`${JSON.stringify({ url: `${base}/mcp`, other: `${base}/other/mcp` })}\n`);
});
process.on('SIGTERM', () => listener.close(() => process.exit(0)));
