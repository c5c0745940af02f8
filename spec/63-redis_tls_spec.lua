-- The store over TLS against a real `redis-server --tls-port`, with
-- certificates the helper makes with openssl: rediss:// URLs and
-- cb.redis{tls = {...}}; the server's certificate and host name verified by
-- default; a wrong CA, a wrong host name and a missing client certificate
-- each fail with an error naming the cause, and breakers keep working.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

-- A handshake costs far more under valgrind: its slack on top.
local TIMEOUT_MS = 1000 + helper.SLACK_MS

describe("#redis the store over TLS", function()
  local server, certs
  local store, breaker = helper.fixture({ tls = true, clock = 1000, store = { timeout_ms = TIMEOUT_MS } },
    function(s) server, certs = s, s.certs end)

  it("shares a breaker's state with a plain-TCP peer on the same server", function()
    local a = store("A", { url = server:tls_url(), tls = { ca_file = certs.ca } })
    local b = store("B")  -- the plain port
    assert.is_true(a:health().connected, a:health().last_error)
    assert.is_true(b:health().connected, b:health().last_error)
    local ba, bb = breaker(a, "svc"), breaker(b, "svc")
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { a, b }))
    bb:reset()
    assert.is_true(helper.eventually(function() return ba:state() == "closed" end, { a, b }))
  end)

  it("takes tls = {enabled = true} with a redis:// URL, and runs shared mode", function()
    local url = ("redis://127.0.0.1:%d/0"):format(server.tls_port)
    local a = store("A", { url = url, mode = "shared", tls = { enabled = true, ca_file = certs.ca } })
    assert.is_true(a:health().connected, a:health().last_error)
    local br = breaker(a, "svc", { failure_threshold = 2 })
    br:failure()
    br:failure()
    assert.equals("open", br:state())
    assert.matches("svc", server:cli("keys 'circuit_breaker:*'"))  -- written through TLS
  end)

  it("refuses a server whose certificate another CA signed", function()
    local a = store("A", { url = server:tls_url(), tls = { ca_file = certs.other_ca } })
    local h = a:health()
    assert.is_false(h.connected)
    assert.matches("certificate verify failed", h.last_error, 1, true)
    local br = breaker(a, "svc")
    assert.is_true((br:allow()))  -- the breaker works on its own meanwhile
  end)

  it("refuses a certificate for another host name", function()
    local a = store("A", { url = server:tls_url(),
                           tls = { ca_file = certs.ca, server_name = "db.example.com" } })
    local h = a:health()
    assert.is_false(h.connected)
    assert.matches("hostname mismatch", h.last_error, 1, true)
    -- the name it was made for passes
    local b = store("B", { url = server:tls_url(nil, "localhost"), tls = { ca_file = certs.ca } })
    assert.is_true(b:health().connected, b:health().last_error)
  end)

  it("trusts any server only when told to (verify = false)", function()
    local a = store("A", { url = server:tls_url(), tls = { ca_file = certs.other_ca, verify = false } })
    assert.is_true(a:health().connected, a:health().last_error)
  end)

  it("cbreaker status takes a rediss:// URL and --tls-ca", function()
    local code, out, err = fx.run_host(("status --redis %s --tls-ca %s"):format(server:tls_url(), certs.ca))
    assert.equals(0, code, out .. err)
    assert.matches("no breaker is open", out, 1, true)
    code, _, err = fx.run_host(("status --redis %s --tls-ca %s"):format(server:tls_url(), certs.other_ca))
    assert.equals(1, code)
    assert.matches("certificate verify failed", err, 1, true)
    code, _, err = fx.run_host(("status --redis %s --tls-ca %s"):format(server:url(), certs.ca))
    assert.equals(1, code)
    assert.matches("tls options need tls.enabled or a rediss:// URL", err, 1, true)
  end)

  it("never sends a rediss:// store's traffic in clear text to a plain port", function()
    local a = store("A", { url = ("rediss://127.0.0.1:%d/0"):format(server.port),
                           tls = { ca_file = certs.ca } })
    assert.is_false(a:health().connected)
    assert.matches("127.0.0.1:" .. server.port, a:health().last_error, 1, true)
  end)
end)

describe("#redis the store over TLS with client certificates", function()
  local server, certs
  local store = helper.fixture({ tls = true, tls_clients = "yes", store = { timeout_ms = TIMEOUT_MS } },
    function(s) server, certs = s, s.certs end)

  it("connects with cert_file and key_file, and not without them", function()
    local a = store("A", { url = server:tls_url(),
                           tls = { ca_file = certs.ca, cert_file = certs.cert, key_file = certs.key } })
    assert.is_true(a:health().connected, a:health().last_error)
    local b = store("B", { url = server:tls_url(), tls = { ca_file = certs.ca } })
    assert.is_false(b:health().connected)
    assert.is_true(b:health().last_error ~= "")
  end)
end)

describe("cb.redis{tls = ...} options", function()
  local function err_of(opts) return fx.error_of(cb.redis, opts) end

  it("name what is wrong", function()
    assert.matches("option 'tls.verify' must be a boolean (got string)",
      err_of{ url = "rediss://127.0.0.1:1/0", tls = { verify = "yes" } }, 1, true)
    assert.matches("unknown option 'tls.cafile' (did you mean 'ca_file'?)",
      err_of{ url = "rediss://127.0.0.1:1/0", tls = { cafile = "x" } }, 1, true)
    assert.matches("tls options need tls.enabled or a rediss:// URL",
      err_of{ url = "redis://127.0.0.1:1/0", tls = { ca_file = "/etc/ssl/certs/ca-certificates.crt" } },
      1, true)
    assert.matches("cert_file and key_file go together",
      err_of{ url = "rediss://127.0.0.1:1/0", tls = { cert_file = "/x.crt" } }, 1, true)
    assert.matches("tls: not over a unix socket",
      err_of{ url = "unix:///tmp/redis.sock", tls = { enabled = true } }, 1, true)
  end)

  it("name a CA file that cannot be read", function()
    assert.matches("/nonexistent/ca.crt",
      err_of{ url = "rediss://127.0.0.1:1/0", tls = { ca_file = "/nonexistent/ca.crt" } }, 1, true)
  end)
end)
