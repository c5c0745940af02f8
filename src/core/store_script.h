/* store_script.h -- the server-side script of the store, loaded once per
 * connection with SCRIPT LOAD and run with EVALSHA.  Time is Redis's TIME,
 * never a client's clock, and every key written gets a TTL.
 *
 * KEYS: 1 state, 2 counter, 3 opened_at, 4 open_until, 5 successes,
 *       6 lease, 7 tripped, 8 forced, 9 the boot-recovery hash <prefix>:states,
 *       10 <prefix>:forced, the set of names held forced open
 *
 * A force lasts until a reset, whatever the TTL: its keys (state, forced,
 * opened_at) are written without one, and while the set of forced names is
 * not empty the boot hash has none either (every other entry in it is
 * aged by its ts when read).  Memory stays bounded: one entry per name,
 * and the set holds only names forced and not reset since.
 *
 * The per-field keys are shared with peers in other languages (a pybreaker
 * service): `state` is only closed, open or half-open; a force is
 * state=open plus the `forced` key, with opened_at far ahead so a peer
 * that probes after opened_at + its own timeout keeps refusing;
 * opened_at is written as whole epoch seconds and read in any of the forms
 * peer_time.h accepts.  A peer's open has no open_until: it lasts until
 * opened_at + the caller's timeout.
 * ARGV: 1 op, 2 name, 3 ttl ms, 4 channel, then per op:
 *   open|forced|closed|recovered  5 message (JSON, published as is),
 *                                 6 ms the open state has left
 *   record   5 "success"|"failure", 6 instance id, 7 failure threshold,
 *            8 success threshold, 9 open timeout ms, 10 quorum
 *   trip     6 instance id, 9 open timeout ms, 10 quorum
 *   all      11 "1": signed (the client has a secret: the fleet's transitions
 *            are neither published nor remembered here, the client
 *            announces them, and a `forced` key counts only beside a boot
 *            entry that says forcedOpen: anyone may write the unsigned keys,
 *            only a signed entry forces; the client verifies that entry)
 *            12 "1": the client found that entry's signature bad: the
 *            force is ignored
 * open returns the open_until it wrote (epoch ms), so the client knows its
 * own open when it reads the keys back; the other broadcast ops return 1.
 * record and trip return {fleet state, ms left open, 1 when this call
 * changed the fleet's state else 0, keys of another type than string seen
 * (ignored, or overwritten when written)}, and, for forced-open when
 * signed, the boot entry that made it a force (for the client to verify).
 * An open learnt from opened_at (a peer's) is capped at the caller's
 * timeout from now, so a far-future opened_at cannot hold the fleet open
 * longer than the key says open. */
#ifndef CB_STORE_SCRIPT_H
#define CB_STORE_SCRIPT_H

static const char cb_store_script[] =
"local op, name, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local S, COUNT, OPENED, UNTIL, SUCC, LEASE, TRIPPED, FORCED, STATES, FORCED_NAMES =\n"
"  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]\n"
"local FORCE_AHEAD = 3155760000\n"  /* s: a force's opened_at is 100 years ahead */
/* opened_at as peer_time.c reads it: epoch ms, or nil */
"local function epoch_ms(v)\n"
"  if type(v) ~= 'string' or #v > 64 then return nil end\n"
"  local int, frac = v:match('^(%d+)$'), nil\n"
"  if not int then int, frac = v:match('^(%d+)%.(%d+)$') end\n"
"  if int then\n"
"    if #int > 15 or (frac and #frac > 9) then return nil end\n"
"    local n = tonumber(v)\n"
"    if n >= 1e14 then return nil end\n"
"    return n < 1e11 and n * 1000 or n\n"
"  end\n"
"  local y, mo, d, h, mi, rest = v:match('^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d)(.*)$')\n"
"  if not y then return nil end\n"
"  y, mo, d, h, mi = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi)\n"
"  local sec, frac = 0, 0\n"
"  local s2, r2 = rest:match('^:(%d%d)(.*)$')\n"
"  if s2 then\n"
"    sec, rest = tonumber(s2), r2\n"
"    local f, r3 = rest:match('^%.(%d+)(.*)$')\n"
"    if f then\n"
"      if #f > 9 then return nil end\n"
"      frac, rest = math.floor(tonumber('0.' .. f) * 1000 + 1e-6), r3\n"
"    elseif rest:sub(1, 1) == '.' then return nil end\n"
"  end\n"
"  local off = 0\n"
"  if rest ~= '' and rest ~= 'Z' and rest ~= 'z' then\n"
"    local sign, oh, om = rest:match('^([+-])(%d%d):?(%d%d)$')\n"
"    if not sign then sign, oh = rest:match('^([+-])(%d%d)$'); om = '00' end\n"
"    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end\n"
"    off = (tonumber(oh) * 60 + tonumber(om)) * (sign == '-' and -1 or 1)\n"
"  end\n"
"  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0\n"
"  local mdays = {31, leap and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}\n"
"  if y < 1970 or mo < 1 or mo > 12 or d < 1 or d > mdays[mo] or h > 23 or mi > 59\n"
"     or sec > 59 then return nil end\n"
"  local yy = mo <= 2 and y - 1 or y\n"  /* days from civil, as peer_time.c */
"  local era = math.floor(yy / 400)\n"
"  local yoe = yy - era * 400\n"
"  local doy = math.floor((153 * (mo > 2 and mo - 3 or mo + 9) + 2) / 5) + d - 1\n"
"  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100)\n"
"    + doy - 719468\n"
"  local s = days * 86400 + h * 3600 + mi * 60 + sec - off * 60\n"
"  if s < 0 or s * 1000 + frac >= 1e14 then return nil end\n"
"  return s * 1000 + frac\n"
"end\n"
"local signed, wrong = ARGV[11] == '1', 0\n"
"local function get(k)\n"  /* a key of another type reads as absent, counted */
"  local v = redis.pcall('GET', k)\n"
"  if type(v) == 'table' then wrong = wrong + 1; return nil end\n"
"  return v or nil\n"
"end\n"
"local function boot_entry()\n"  /* bounded: an entry is at most ~4 KiB */
"  local n = redis.pcall('HSTRLEN', STATES, name)\n"
"  if type(n) ~= 'number' or n == 0 or n > 4200 then return nil end\n"
"  return redis.call('HGET', STATES, name)\n"
"end\n"
"local function is_forced(marker)\n"
"  if not marker or ARGV[12] == '1' then return false end\n"
"  if not signed then return true end\n"
"  local v = boot_entry()\n"
"  if not v then return false end\n"
"  local ok, d = pcall(cjson.decode, v)\n"
"  return ok and type(d) == 'table' and d.forcedOpen == true\n"
"end\n"
"local function keep_states()\n"  /* a held force keeps the hash until its reset */
"  if redis.call('SCARD', FORCED_NAMES) > 0 then redis.call('PERSIST', STATES)\n"
"  else redis.call('PEXPIRE', STATES, ttl) end\n"
"end\n"
"local function remember(msg)\n"
"  redis.call('HSET', STATES, name, msg)\n"
"  keep_states()\n"
"end\n"
"local function forget_unless_forced()\n"
"  local v = redis.call('HGET', STATES, name)\n"
"  if v then\n"
"    local ok, d = pcall(cjson.decode, v)\n"
"    if not (ok and type(d) == 'table' and d.forcedOpen == true) then\n"
"      redis.call('HDEL', STATES, name)\n"
"    end\n"
"  end\n"
"end\n"
/* broadcast: persist and publish a transition the client decided.  A
 * force is lifted by a reset only: a plain close or open leaves its keys. */
"local forced = is_forced(redis.call('EXISTS', FORCED) == 1)\n"
"if op == 'recovered' then\n"
"  redis.call('DEL', S, COUNT, OPENED, UNTIL, SUCC, LEASE, TRIPPED, FORCED)\n"
"  redis.call('HDEL', STATES, name)\n"
"  redis.call('SREM', FORCED_NAMES, name)\n"
"  if redis.call('EXISTS', STATES) == 1 then keep_states() end\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  return 1\n"
"elseif op == 'closed' then\n"
"  if not forced then\n"
"    redis.call('SET', S, 'closed', 'PX', ttl)\n"
"    redis.call('DEL', OPENED, UNTIL, SUCC, LEASE, TRIPPED)\n"
"  end\n"
"  forget_unless_forced()\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  return 1\n"
"elseif op == 'open' or op == 'forced' then\n"
"  if op == 'forced' then\n"  /* no TTL: until a reset */
"    redis.call('SET', S, 'open')\n"
"    redis.call('SET', FORCED, '1')\n"
"    redis.call('SET', OPENED, math.floor(now / 1000) + FORCE_AHEAD)\n"
"    redis.call('DEL', UNTIL)\n"
"    redis.call('SADD', FORCED_NAMES, name)\n"
"  elseif not forced then\n"
"    redis.call('SET', S, 'open', 'PX', ttl)\n"
"    redis.call('SET', OPENED, math.floor(now / 1000), 'PX', ttl)\n"
"    redis.call('SET', UNTIL, now + tonumber(ARGV[6]), 'PX', ttl)\n"
"  end\n"
"  if op == 'forced' or not forced then remember(ARGV[5]) end\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  if op == 'open' and not forced then return now + tonumber(ARGV[6]) end\n"
"  return 1\n"
"end\n"
/* shared: the fleet's state machine */
"local id, timeout, quorum = ARGV[6], tonumber(ARGV[9]), tonumber(ARGV[10])\n"
"local quiet = signed\n"
"local function answer(state, left, changed)\n"
"  return {state, left, changed and 1 or 0, wrong}\n"
"end\n"
"local function incr(k)\n"  /* a counter of another type is replaced */
"  local n = redis.pcall('INCR', k)\n"
"  if type(n) == 'table' then wrong = wrong + 1; redis.call('SET', k, 1); n = 1 end\n"
"  return n\n"
"end\n"
"local function message(state, left)\n"
"  return cjson.encode({serviceId = name, state = state, ts = now, forcedOpen = false,\n"
"    recovered = false, origin = id, retryAfterMs = left})\n"
"end\n"
"local function open_fleet()\n"
"  redis.call('SET', S, 'open', 'PX', ttl)\n"
"  redis.call('SET', OPENED, math.floor(now / 1000), 'PX', ttl)\n"
"  redis.call('SET', UNTIL, now + timeout, 'PX', ttl)\n"
"  redis.call('DEL', COUNT, SUCC, LEASE, TRIPPED)\n"
"  if not quiet then\n"
"    local m = message('open', timeout)\n"
"    remember(m)\n"
"    redis.call('PUBLISH', channel, m)\n"
"  end\n"
"  return answer('open', timeout, true)\n"
"end\n"
"local state = get(S) or 'closed'\n"
"if state == 'forced-open' then forced, state = forced or is_forced(true), 'open' end\n"
"if state == 'open' and forced then\n"
"  local a = answer('forced-open', -1, false)\n"
"  if signed then a[5] = boot_entry() or false end\n"
"  return a\n"
"end\n"
/* open_until is ours; a peer's open (or a later one over a stale
 * open_until) lasts until opened_at + our timeout */
"local deadline = tonumber(get(UNTIL) or '')\n"
"if state == 'open' then\n"
"  local at = epoch_ms(get(OPENED))\n"
"  if at and (not deadline or at > deadline) then deadline = math.min(at, now) + timeout end\n"
"end\n"
"deadline = deadline or 0\n"
"if state == 'open' and now < deadline then return answer('open', deadline - now) end\n"
"if state == 'open' then state = 'half-open' end\n"
"if op == 'trip' then\n"
"  if type(redis.pcall('ZADD', TRIPPED, now, id)) == 'table' then\n"
"    wrong = wrong + 1\n"
"    redis.call('DEL', TRIPPED)\n"
"    redis.call('ZADD', TRIPPED, now, id)\n"
"  end\n"
"  redis.call('ZREMRANGEBYSCORE', TRIPPED, '-inf', now - timeout)\n"
"  redis.call('PEXPIRE', TRIPPED, ttl)\n"
"  if state == 'closed' and redis.call('ZCARD', TRIPPED) >= quorum then\n"
"    return open_fleet()\n"
"  end\n"
"  return answer(state, 0)\n"
"end\n"
"local failed = ARGV[5] == 'failure'\n"
"if state == 'closed' then\n"
"  if quorum > 1 then return answer('closed', 0) end\n"
"  if failed then\n"
"    local n = incr(COUNT)\n"
"    redis.call('PEXPIRE', COUNT, ttl)\n"
"    if n >= tonumber(ARGV[7]) then return open_fleet() end\n"
"  elseif redis.call('EXISTS', COUNT) == 1 then\n"
"    redis.call('DEL', COUNT)\n"
"  end\n"
"  return answer('closed', 0)\n"
"end\n"
/* half-open: only the holder of the probe lease reports for the fleet */
"if get(LEASE) ~= id then return answer('half-open', 0) end\n"
"redis.call('DEL', LEASE)\n"
"if failed then return open_fleet() end\n"
"local n = incr(SUCC)\n"
"redis.call('PEXPIRE', SUCC, ttl)\n"
"if n < tonumber(ARGV[8]) then return answer('half-open', 0) end\n"
"redis.call('SET', S, 'closed', 'PX', ttl)\n"
"redis.call('DEL', COUNT, OPENED, UNTIL, SUCC, TRIPPED)\n"
"forget_unless_forced()\n"
"if not quiet then redis.call('PUBLISH', channel, message('closed', nil)) end\n"
"return answer('closed', 0, true)\n";

/* The peer read: what the per-field keys of some names say, never more
 * than a few bytes of each (no value over 64 bytes is a state or a time
 * anyway, and a peer's key may hold megabytes).
 * KEYS: per name state, opened_at, open_until, forced; last the boot hash.
 * ARGV: the names, one per four keys.
 * Returns per name: state, opened_at and open_until as their first 65
 * bytes (nil when absent or empty), 1 when the `forced` key exists (of any
 * type, as the store's script counts it) else 0, and the boot entry when
 * forced (nil when absent or over 4200 bytes: the client verifies it);
 * then the number of keys of another type than string (read as absent). */
static const char cb_read_script[] =
"local states, out, wrong = KEYS[#KEYS], {}, 0\n"
"local function head(k)\n"
"  local v = redis.pcall('GETRANGE', k, 0, 64)\n"
"  if type(v) == 'table' then wrong = wrong + 1; return false end\n"
"  return v ~= '' and v\n"
"end\n"
"for i = 1, #ARGV do\n"
"  local k = (i - 1) * 4\n"
"  local forced, entry = redis.call('EXISTS', KEYS[k + 4]), false\n"
"  if forced == 1 then\n"
"    local n = redis.pcall('HSTRLEN', states, ARGV[i])\n"
"    if type(n) == 'number' and n > 0 and n <= 4200 then\n"
"      entry = redis.call('HGET', states, ARGV[i])\n"
"    end\n"
"  end\n"
"  out[#out + 1] = head(KEYS[k + 1])\n"
"  out[#out + 1] = head(KEYS[k + 2])\n"
"  out[#out + 1] = head(KEYS[k + 3])\n"
"  out[#out + 1] = forced\n"
"  out[#out + 1] = entry\n"
"end\n"
"out[#out + 1] = wrong\n"
"return out\n";

#endif
