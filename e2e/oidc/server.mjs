// An oidc-provider authorization server for tokend's end-to-end tests.
//
// It is an independent implementation of OAuth 2.0 that tokend must
// interoperate with; the test-only parts are small: interactions finish on
// their own (there is one user, "e2e-user", who always logs in and consents
// to everything asked), and /_test/* routes report what the server saw.
//
// Configuration: a JSON file named by the first argument or by
// $E2E_OIDC_CONFIG_FILE, or JSON text in $E2E_OIDC_CONFIG; every key is
// optional:
//
//   port                  TCP port on 127.0.0.1, 0 (default) picks one
//   accessTokenTTL        seconds, authorization_code/device/refresh access tokens (15)
//   clientCredentialsTTL  seconds, client_credentials access tokens (15)
//   refreshTokenTTL       seconds (86400)
//   deviceCodeTTL         seconds (600)
//   deviceInterval        polling interval put in device authorization responses (1)
//   scopes                scopes the server knows (openid offline_access api:read api:write)
//   resourceScope         scopes of every resource server (resource indicators) ("api:read api:write")
//   jwtResources          resource indicators whose access tokens are JWTs (RS256,
//                         typ at+jwt, aud = the indicator, the resourceScope
//                         scopes), which a resource server verifies itself
//                         with the provider's JWKS; other resources keep opaque
//                         tokens ([])
//   defaultResource       the resource of a request that names none (none)
//   interactive           false (default): login and consent finish on their own;
//                         true: they are HTML pages a person (or a driven
//                         browser) fills in, see "Interactive pages" below
//   clients               oidc-provider client metadata (client_id, client_secret,
//                         grant_types, redirect_uris, token_endpoint_auth_method,
//                         jwks, tls_client_auth_subject_dn, dpop_bound_access_tokens,
//                         ...); application_type defaults to "native" so a
//                         loopback redirect URI matches on any port
//   tls                   {cert, key, clientCA}: PEM file names; serve https
//                         with this certificate instead of http. clientCA are the
//                         CAs whose client certificates count as verified
//                         (tls_client_auth, one CA certificate); any certificate
//                         is accepted at the handshake and judged by oidc-provider
//   mtls                  {tlsClientAuth, selfSignedTlsClientAuth,
//                         certificateBoundAccessTokens, alias}: features.mTLS
//                         (RFC 8705; needs tls). Without alias the issuer's
//                         listener asks every client for a certificate; with
//                         alias: true it asks none, and a second listener that
//                         does is advertised as mtls_endpoint_aliases
//   dpop                  false turns features.dPoP off (oidc-provider 9 has it
//                         on: a token request with a DPoP proof gets a
//                         DPoP-bound token, token_type DPoP, cnf.jkt)
//   dpopNonce             true: every DPoP proof must carry a nonce the server
//                         gave (use_dpop_nonce, DPoP-Nonce header)
//   dpopNonceLoop         true: a broken server, not oidc-provider's doing: every
//                         token request with a DPoP proof is answered
//                         use_dpop_nonce with a new nonce, whatever nonce it carries
//   clientAuthSigningAlgs algorithms accepted for client assertions
//                         (oidc-provider's default: HS256 RS256 PS256 ES256 Ed25519 EdDSA)
//   clientAuthMethods     token endpoint auth methods (default: oidc-provider's,
//                         none client_secret_basic client_secret_post
//                         client_secret_jwt private_key_jwt, plus the mtls ones
//                         enabled)
//
// Once listening it prints one JSON line to stdout:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT}
// (https with tls; "mtlsAlias":"https://127.0.0.1:PORT2" with mtls.alias)
// and everything else (oidc-provider's error details, which clients only see
// as "grant request is invalid") goes to stderr, one line each.
//
// Policies chosen for the tests:
//   - Refresh tokens always rotate (rotateRefreshToken: true), so presenting a
//     used refresh token is detected as reuse: oidc-provider then revokes the
//     whole grant and answers invalid_grant ("refresh token already used").
//   - A refresh token is issued to every client allowed the refresh_token
//     grant, without offline_access or prompt=consent (issueRefreshToken
//     override); refresh tokens do not end with the login session.
//   - PKCE (S256) is required for public clients (token_endpoint_auth_method
//     none), optional for confidential ones: oidc-provider's default.
//   - Tokens are opaque; without a resource indicator an access token lives
//     accessTokenTTL (clientCredentialsTTL for client_credentials). With a
//     resource parameter every resource is accepted as an opaque resource
//     server with the same TTL.
//   - Registration is open (no initial access token).
//   - Device flow: GET verification_uri_complete answers an all-hidden-inputs
//     form (oidc-provider's form_post page); submitting it answers the
//     confirmation page below, again only hidden inputs (xsrf, user_code,
//     confirm=yes); submitting that goes through the login and consent
//     interactions, which finish on their own. So a client with a cookie jar
//     that follows redirects and submits the single all-hidden form of each
//     page approves the code: no test-only shortcut.
//
// Interactive pages (interactive: true), for the tests that drive a real
// browser: GET /interaction/UID shows a login form (username, password;
// the one account is e2e-user / e2e-password, anything else is refused on
// the same page) posting to /interaction/UID/login, then a consent page
// naming the client and the scopes asked, with an Allow button (POST
// /interaction/UID/confirm) and a Deny button (POST /interaction/UID/abort,
// which ends the authorization with error=access_denied at the client).
//
// Test routes:
//   GET /_test/stats             counts (see `stats` below)
//   GET /_test/refresh_tokens?client_id=ID
//                                {"active":N,"consumed":N,"expired":N,"gone":N}
//                                over every refresh token issued to ID, so a test
//                                can check revocation of tokens it never sees
//   GET /_test/hold?ms=N         hold the next token request N ms before it is
//                                read and answered (once); {"held":N} counts the
//                                requests held so far, so a test can pause the
//                                client in the middle of a refresh (fleet e2e)
//   GET /_test/seen              {"client_assertions":[...],"dpop_proofs":[...]}:
//                                the last 200 client assertions (any endpoint) and
//                                DPoP proofs (token endpoint) presented, so a test
//                                can look for them where they must not be (logs)

import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { inspect } from 'node:util';

// The RSA signing key is generated before oidc-provider is loaded: with the
// key made after a static import, about 1 start in 100 hung in
// generateKeyPairSync (Node 20.20; 3 of 300 starts, 0 of 300 this way),
// which the tests saw as "oidc-provider did not start in 30s".
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const { default: Provider } = await import('oidc-provider');

function loadConfig() {
  const file = process.argv[2] || process.env.E2E_OIDC_CONFIG_FILE;
  if (file) return JSON.parse(readFileSync(file, 'utf8'));
  if (process.env.E2E_OIDC_CONFIG) return JSON.parse(process.env.E2E_OIDC_CONFIG);
  return {};
}

const cfg = {
  port: 0,
  accessTokenTTL: 15,
  clientCredentialsTTL: 15,
  refreshTokenTTL: 86400,
  deviceCodeTTL: 600,
  deviceInterval: 1,
  scopes: ['openid', 'offline_access', 'api:read', 'api:write'],
  resourceScope: 'api:read api:write',
  interactive: false,
  clients: [],
  tls: null,
  mtls: null,
  dpop: true,
  dpopNonce: false,
  dpopNonceLoop: false,
  clientAuthSigningAlgs: null,
  clientAuthMethods: null,
  jwtResources: [],
  defaultResource: '',
  ...loadConfig(),
};
if (cfg.mtls && !cfg.tls) throw new Error('mtls needs tls');

function log(...args) {
  const line = args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4, breakLength: Infinity }))).join(' ');
  process.stderr.write(`oidc: ${line}\n`);
}

// what describes an oidc-provider error for the log: clients get only
// error and error_description; error_detail says what really went wrong.
function what(err) {
  return { error: err.error || err.name, description: err.error_description, detail: err.error_detail || err.message };
}

const stats = {
  token_requests: {}, // grant_type -> count, answered or not
  token_success: {}, // grant_type -> count
  token_errors: {}, // "grant_type error" -> count
  invalid_grant: 0, // invalid_grant answers at the token endpoint
  refresh_token_reuse: 0, // a used (rotated-away) refresh token presented again
  registrations: 0,
  revocations: 0,
  revocation_errors: 0,
  introspections: 0,
  device_authorizations: 0,
  authorizations: 0,
  server_errors: 0,
  // client authentication beyond secrets, DPoP
  client_auth_errors: {}, // invalid_client detail -> count, at the token endpoint
  client_assertions: {}, // route (token, revocation, device_authorization, ...) -> requests with a client assertion
  client_certificates: 0, // token endpoint requests that presented a TLS client certificate
  alias_requests: 0, // requests that arrived at the mtls alias listener
  dpop_proofs: 0, // token endpoint requests with a DPoP header
  dpop_tokens: 0, // token endpoint answers with token_type DPoP
  dpop_errors: {}, // invalid_dpop_proof detail -> count
  use_dpop_nonce: 0, // use_dpop_nonce answers (a nonce handed out)
};

// The last client assertions and DPoP proofs seen (GET /_test/seen).
const seen = { client_assertions: [], dpop_proofs: [] };
function remember(list, value) {
  if (typeof value !== 'string' || !value) return;
  list.push(value);
  if (list.length > 200) list.shift();
}

function bump(obj, key) {
  obj[key] = (obj[key] || 0) + 1;
}

// Every refresh token ever issued: jti -> client_id. The memory adapter
// keeps the tokens; /_test/refresh_tokens looks each up again.
const refreshTokens = new Map();

const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', kid: 'e2e' };

// tlsOptions are the https options of a listener; askCert: request a
// client certificate (never required at the handshake: oidc-provider
// answers a missing or unverified one with invalid_client, which says more).
// The request names no CAs: a client (Go's crypto/tls among them) sends no
// certificate whose issuer is not among the names given, so naming the
// clientCA would keep self-signed certificates away; certificateAuthorized
// checks the chain instead.
function tlsOptions(askCert) {
  const o = { cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) };
  if (askCert) {
    o.requestCert = true;
    o.rejectUnauthorized = false;
  }
  return o;
}
const clientCA = cfg.tls?.clientCA ? new X509Certificate(readFileSync(cfg.tls.clientCA)) : null;

async function listen(srv, port) {
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  return srv.address().port;
}

// The issuer carries the port, which is only known once listening; bind
// first, then build the provider.
const scheme = cfg.tls ? 'https' : 'http';
const server = cfg.tls ? https.createServer(tlsOptions(cfg.mtls && !cfg.mtls.alias)) : http.createServer();
const port = await listen(server, cfg.port);
const issuer = `${scheme}://127.0.0.1:${port}`;

let aliasServer = null;
let mtlsAlias = '';
if (cfg.mtls?.alias) {
  aliasServer = https.createServer(tlsOptions(true));
  mtlsAlias = `https://127.0.0.1:${await listen(aliasServer, 0)}`;
}

// peerCertificate is the client certificate of ctx's connection, if any.
function peerCertificate(ctx) {
  const sock = ctx.req.socket;
  if (typeof sock.getPeerCertificate !== 'function') return undefined;
  const c = sock.getPeerCertificate(false);
  if (!c || !c.raw) return undefined;
  return c;
}

// dnMatches compares an RFC 4514 string ("CN=a,O=b") with a certificate's
// subject (Node's {CN:'a',O:'b'}); enough for the tests' simple names.
function dnMatches(expected, subject) {
  const want = Object.fromEntries(String(expected).split(',').map((rdn) => {
    const i = rdn.indexOf('=');
    return [rdn.slice(0, i).trim().toUpperCase(), rdn.slice(i + 1).trim()];
  }));
  const got = Object.entries(subject || {});
  return got.length === Object.keys(want).length && got.every(([k, v]) => want[k.toUpperCase()] === v);
}

const mTLS = cfg.mtls ? {
  enabled: true,
  tlsClientAuth: !!cfg.mtls.tlsClientAuth,
  selfSignedTlsClientAuth: !!cfg.mtls.selfSignedTlsClientAuth,
  certificateBoundAccessTokens: !!cfg.mtls.certificateBoundAccessTokens,
  getCertificate(ctx) {
    const c = peerCertificate(ctx);
    return c ? new X509Certificate(c.raw) : undefined;
  },
  // certificateAuthorized: issued and signed by clientCA, and within its
  // validity period.
  certificateAuthorized(ctx) {
    const c = peerCertificate(ctx);
    if (!c || !clientCA) return false;
    const x = new X509Certificate(c.raw);
    const now = Date.now();
    return x.checkIssued(clientCA) && x.verify(clientCA.publicKey)
      && Date.parse(x.validFrom) <= now && now <= Date.parse(x.validTo);
  },
  certificateSubjectMatches(ctx, property, expected) {
    const c = peerCertificate(ctx);
    if (!c) return false;
    switch (property) {
      case 'tls_client_auth_subject_dn':
        return dnMatches(expected, c.subject);
      case 'tls_client_auth_san_dns':
        return String(c.subjectaltname || '').split(', ').includes(`DNS:${expected}`);
      default:
        return false;
    }
  },
} : { enabled: false };

const clientAuthMethods = cfg.clientAuthMethods || [
  'none', 'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt',
  ...(cfg.mtls?.tlsClientAuth ? ['tls_client_auth'] : []),
  ...(cfg.mtls?.selfSignedTlsClientAuth ? ['self_signed_tls_client_auth'] : []),
];

const discovery = {};
if (mtlsAlias) {
  discovery.mtls_endpoint_aliases = {
    token_endpoint: `${mtlsAlias}/token`,
    revocation_endpoint: `${mtlsAlias}/token/revocation`,
    introspection_endpoint: `${mtlsAlias}/token/introspection`,
    device_authorization_endpoint: `${mtlsAlias}/device/auth`,
    userinfo_endpoint: `${mtlsAlias}/me`,
  };
}

const clients = cfg.clients.map((c) => ({ application_type: 'native', ...c }));

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  cookies: { keys: ['e2e-cookie-key-not-secret'] },
  scopes: cfg.scopes,
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
  clientAuthMethods,
  ...(cfg.clientAuthSigningAlgs ? { enabledJWA: { clientAuthSigningAlgValues: cfg.clientAuthSigningAlgs } } : {}),
  ...(mtlsAlias ? { discovery } : {}),
  features: {
    devInteractions: { enabled: false },
    mTLS,
    dPoP: cfg.dpop ? {
      enabled: true,
      nonceSecret: cfg.dpopNonce ? randomBytes(32) : undefined,
      requireNonce: () => !!cfg.dpopNonce,
    } : { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
    deviceFlow: {
      enabled: true,
      async userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
        ctx.body = `<!DOCTYPE html>
<html><head><title>Confirm device</title></head>
<body><p>Approve ${client.clientId} with code <code>${userCode}</code>?</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
</body></html>`;
      },
      async successSource(ctx) {
        ctx.body = '<!DOCTYPE html><html><head><title>Device approved</title></head><body><p>device approved</p></body></html>';
      },
    },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        return oneOf || cfg.defaultResource || undefined;
      },
      async getResourceServerInfo(_ctx, indicator) {
        if (cfg.jwtResources.includes(indicator)) {
          return {
            scope: cfg.resourceScope,
            audience: indicator,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
            accessTokenTTL: cfg.accessTokenTTL,
          };
        }
        return {
          scope: cfg.resourceScope,
          accessTokenFormat: 'opaque',
          accessTokenTTL: cfg.accessTokenTTL,
        };
      },
    },
  },
  pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
  rotateRefreshToken: true,
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: () => cfg.accessTokenTTL,
    ClientCredentials: () => cfg.clientCredentialsTTL,
    RefreshToken: () => cfg.refreshTokenTTL,
    DeviceCode: () => cfg.deviceCodeTTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 86400,
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oidc error</title></head><body><pre>${JSON.stringify(out).replace(/</g, '&lt;')}</pre></body></html>`;
  },
});

provider.on('grant.success', (ctx) => {
  bump(stats.token_success, ctx.oidc.params?.grant_type || '?');
});
provider.on('grant.error', (ctx, err) => {
  const gt = ctx.oidc?.params?.grant_type || '?';
  bump(stats.token_errors, `${gt} ${err.error || err.name}`);
  if (err.error === 'invalid_grant') stats.invalid_grant += 1;
  if (err.error === 'invalid_client') bump(stats.client_auth_errors, err.error_detail || err.message || '?');
  if (err.error === 'invalid_dpop_proof') bump(stats.dpop_errors, err.error_detail || err.error_description || '?');
  if (err.error === 'use_dpop_nonce') stats.use_dpop_nonce += 1;
  if (err.error_detail === 'refresh token already used') stats.refresh_token_reuse += 1;
  // authorization_pending is the normal answer while a device code waits.
  if (err.error !== 'authorization_pending') {
    log('token error:', { grant_type: gt, client_id: ctx.oidc?.client?.clientId, ...what(err) });
  }
});
provider.on('registration_create.success', (_ctx, client) => {
  stats.registrations += 1;
  log('registered client', client.clientId, client.tokenEndpointAuthMethod, JSON.stringify(client.grantTypes));
});
provider.on('registration_create.error', (ctx, err) => log('registration error:', what(err), 'metadata:', ctx.oidc?.body));
provider.on('revocation.error', (_ctx, err) => {
  stats.revocation_errors += 1;
  log('revocation error:', what(err));
});
provider.on('introspection.error', (ctx, err) => log('introspection error:', what(err), 'client:', ctx.oidc?.client?.clientId));
provider.on('device_authorization.success', () => { stats.device_authorizations += 1; });
provider.on('device_authorization.error', (ctx, err) => log('device authorization error:', what(err), 'client:', ctx.oidc?.client?.clientId));
provider.on('authorization.success', () => { stats.authorizations += 1; });
provider.on('authorization.error', (ctx, err) => log('authorization error:', what(err), 'client:', ctx.oidc?.client?.clientId));
provider.on('code_verification.error', (ctx, err) => log('code verification error:', what(err), 'client:', ctx.oidc?.client?.clientId));
provider.on('server_error', (_ctx, err) => {
  stats.server_errors += 1;
  log('server error:', err);
});
provider.on('refresh_token.saved', (token) => {
  if (token.jti) refreshTokens.set(token.jti, token.clientId);
});

// Counts every request to the token, revocation and introspection
// endpoints (also those failing client authentication, which emit no grant
// event). The device authorization response carries no interval in
// oidc-provider (clients then default to 5 s); a shorter one keeps the
// tests quick.
provider.use(async (ctx, next) => {
  try {
    await next();
  } finally {
    const route = ctx.oidc?.route;
    const assertion = ctx.oidc?.body?.client_assertion;
    if (assertion) {
      bump(stats.client_assertions, route || '?');
      remember(seen.client_assertions, assertion);
    }
    if (route === 'token') {
      bump(stats.token_requests, ctx.oidc.params?.grant_type || '?');
      if (ctx.get('DPoP')) {
        stats.dpop_proofs += 1;
        remember(seen.dpop_proofs, ctx.get('DPoP'));
      }
      if (peerCertificate(ctx)) stats.client_certificates += 1;
      if (ctx.status === 200 && ctx.body?.token_type === 'DPoP') stats.dpop_tokens += 1;
    } else if (route === 'revocation' && ctx.status === 200) {
      stats.revocations += 1;
    } else if (route === 'introspection') {
      stats.introspections += 1;
    }
  }
  if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    ctx.body.interval = cfg.deviceInterval;
  }
});

// interaction finishes login and consent at once: the single user logs in
// and grants whatever the client asked for.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: 'e2e-user' } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    let grant;
    if (details.grantId) {
      grant = await provider.Grant.find(details.grantId);
    } else {
      grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    }
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unexpected interaction prompt ${prompt.name}`);
}

const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>${esc(title)}</h1>
${body}
</body></html>`);
}

async function formBody(req) {
  let data = '';
  for await (const chunk of req) {
    data += chunk;
    if (data.length > 8192) throw new Error('form too large');
  }
  return new URLSearchParams(data);
}

function loginForm(res, uid, clientId, message) {
  page(res, 200, 'Sign in', `<p>Sign in to authorize <b id="client">${esc(clientId)}</b>.</p>
${message ? `<p id="message" style="color:#b00">${esc(message)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<p><label>Username <input id="username" name="username" autocomplete="off"></label></p>
<p><label>Password <input id="password" name="password" type="password"></label></p>
<p><button id="signin" type="submit">Sign in</button></p>
</form>`);
}

// interactivePage serves the login and consent pages of an interactive
// server (see "Interactive pages" at the top).
async function interactivePage(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  const action = url.pathname.slice(`/interaction/${uid}`.length);
  if (req.method === 'GET' && action === '') {
    if (prompt.name === 'login') {
      loginForm(res, uid, params.client_id, '');
      return;
    }
    if (prompt.name === 'consent') {
      const scopes = String(params.scope || '').split(' ').filter(Boolean);
      page(res, 200, 'Authorize access', `<p><b id="client">${esc(params.client_id)}</b> asks for access to your account <b>${esc(details.session?.accountId)}</b>.</p>
<ul id="scopes">${scopes.map((sc) => `<li>${esc(sc)}</li>`).join('')}</ul>
<form method="post" action="/interaction/${esc(uid)}/confirm" style="display:inline"><button id="allow" type="submit">Allow</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort" style="display:inline"><button id="deny" type="submit">Deny</button></form>`);
      return;
    }
    throw new Error(`unexpected interaction prompt ${prompt.name}`);
  }
  if (req.method === 'POST' && action === '/login' && prompt.name === 'login') {
    const form = await formBody(req);
    if (form.get('username') !== 'e2e-user' || form.get('password') !== 'e2e-password') {
      log('interactive login refused for', form.get('username'));
      loginForm(res, uid, params.client_id, 'Wrong username or password.');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: 'e2e-user' } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && action === '/confirm' && prompt.name === 'consent') {
    await interaction(req, res); // grants what was asked, as the automatic consent does
    return;
  }
  if (req.method === 'POST' && action === '/abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User denied the authorization',
    }, { mergeWithLastSubmission: false });
    return;
  }
  page(res, 400, 'Bad request', '<p>This interaction does not expect that request.</p>');
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function refreshTokenCounts(clientId) {
  const out = { active: 0, consumed: 0, expired: 0, gone: 0 };
  for (const [jti, cid] of refreshTokens) {
    if (clientId && cid !== clientId) continue;
    // eslint-disable-next-line no-await-in-loop
    const t = await provider.RefreshToken.find(jti, { ignoreExpiration: true });
    if (!t) out.gone += 1;
    else if (t.consumed) out.consumed += 1;
    else if (t.isExpired) out.expired += 1;
    else out.active += 1;
  }
  return out;
}

const callback = provider.callback();
let holdNext = 0; // ms to hold the next token request
let held = 0;
async function handle(req, res) {
  const url = new URL(req.url, issuer);
  if (holdNext > 0 && req.method === 'POST' && url.pathname === '/token') {
    const ms = holdNext;
    holdNext = 0;
    held += 1;
    await new Promise((resolve) => { setTimeout(resolve, ms); });
  }
  try {
    if (req.method === 'GET' && url.pathname === '/_test/hold') {
      if (url.searchParams.has('ms')) holdNext = Number(url.searchParams.get('ms')) || 0;
      json(res, 200, { held });
      return;
    }
    if (cfg.interactive && url.pathname.startsWith('/interaction/')) {
      await interactivePage(req, res, url);
      return;
    }
    if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      await interaction(req, res);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/_test/stats') {
      json(res, 200, stats);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/_test/refresh_tokens') {
      json(res, 200, await refreshTokenCounts(url.searchParams.get('client_id')));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/_test/seen') {
      json(res, 200, seen);
      return;
    }
  } catch (err) {
    log('interaction/test route error:', err);
    if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err.message) });
    return;
  }
  if (cfg.dpopNonceLoop && url.pathname === '/token' && req.headers.dpop) {
    stats.use_dpop_nonce += 1;
    bump(stats.token_requests, 'nonce-loop');
    res.writeHead(400, { 'content-type': 'application/json', 'dpop-nonce': randomBytes(16).toString('base64url'), 'cache-control': 'no-store' });
    res.end(JSON.stringify({ error: 'use_dpop_nonce', error_description: 'Authorization server requires nonce in DPoP proof' }));
    return;
  }
  callback(req, res);
}
server.on('request', handle);
if (aliasServer) {
  aliasServer.on('request', (req, res) => {
    stats.alias_requests += 1;
    handle(req, res);
  });
}

process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ issuer, port, ...(mtlsAlias ? { mtlsAlias } : {}) })}\n`);
