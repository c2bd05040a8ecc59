// Package mcpconformance runs the client authorization scenarios of the MCP
// conformance suite (@modelcontextprotocol/conformance, the version pinned
// by package-lock.json beside this file) against tokend: for each scenario
// the suite starts its MCP server and authorization servers and runs
// scripts/mcp-conformance-client, which reaches them only through a tokend
// daemon it starts (`tokend authorize --paste` for the grants that need a
// person, `tokend mcp` as the transport of an MCP client that does no OAuth
// itself). Every auth scenario of the pinned version runs by name: the
// suite's `auth` group leaves out the 2025-03-26, draft and extension ones.
//
// A scenario passes as the suite judges it: no check FAILURE or WARNING,
// no timeout, and the client exited 0 unless the scenario expects it to
// fail (resource-mismatch, scope-retry-limit). TestAuthScenarios runs them
// with the MCP client launching `tokend mcp` and logs the passed/total
// figure; TestAuthScenariosThroughProxy runs them again with the client
// speaking Streamable HTTP to the grant's proxy (the daemon's), and logs
// its own.
//
// It needs what `scripts/test-deps mcp` installs (Node 22, the suite and
// the MCP TypeScript SDK, into node_modules here) and curl; without them it
// skips, except under CI (CI set), where it fails. MCP_CONFORMANCE_RACE=1
// builds tokend with the race detector. One scenario by hand:
//
//	scripts/test-deps mcp
//	e2e/mcpconformance/node_modules/.bin/node \
//	  e2e/mcpconformance/node_modules/@modelcontextprotocol/conformance/dist/index.js \
//	  client --command scripts/mcp-conformance-client --scenario auth/metadata-default
//
// (MCP_CONFORMANCE_TRANSPORT=proxy for the proxy; MCP_CONFORMANCE_KEEP=DIR
// keeps the daemon's configuration, store and log.)
//
// The package has no non-test code.
package mcpconformance
