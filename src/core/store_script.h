/* store_script.h -- the server-side script of the store, loaded once per
 * connection with SCRIPT LOAD and run with EVALSHA.  Time is Redis's TIME,
 * never a client's clock, and every key written gets a TTL.
 *
 * KEYS: 1 state, 2 counter, 3 opened_at, 4 open_until, 5 successes,
 *       6 lease, 7 tripped, 8 the boot-recovery hash <prefix>:states
 * ARGV: 1 op, 2 name, 3 ttl ms, 4 channel, then per op:
 *   open|forced|closed|recovered  5 message (JSON, published as is),
 *                                 6 ms the open state has left
 *   record   5 "success"|"failure", 6 instance id, 7 failure threshold,
 *            8 success threshold, 9 open timeout ms, 10 quorum
 *   trip     6 instance id, 9 open timeout ms, 10 quorum
 *   both     11 "1": quiet (the client signs: the fleet's transitions are
 *            neither published nor remembered here, the client announces them)
 * record and trip return {fleet state, ms left open}, plus a third element 1
 * when this call changed the fleet's state. */
#ifndef CB_STORE_SCRIPT_H
#define CB_STORE_SCRIPT_H

static const char cb_store_script[] =
"local op, name, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local S, COUNT, OPENED, UNTIL, SUCC, LEASE, TRIPPED, STATES =\n"
"  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]\n"
"local function remember(msg)\n"
"  redis.call('HSET', STATES, name, msg)\n"
"  redis.call('PEXPIRE', STATES, ttl)\n"
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
/* broadcast: persist and publish a transition the client decided */
"if op == 'recovered' then\n"
"  redis.call('DEL', S, COUNT, OPENED, UNTIL, SUCC, LEASE, TRIPPED)\n"
"  redis.call('HDEL', STATES, name)\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  return 1\n"
"elseif op == 'closed' then\n"
"  redis.call('SET', S, 'closed', 'PX', ttl)\n"
"  redis.call('DEL', OPENED, UNTIL, SUCC, LEASE, TRIPPED)\n"
"  forget_unless_forced()\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  return 1\n"
"elseif op == 'open' or op == 'forced' then\n"
"  redis.call('SET', S, op == 'open' and 'open' or 'forced-open', 'PX', ttl)\n"
"  redis.call('SET', OPENED, now, 'PX', ttl)\n"
"  if op == 'open' then\n"
"    redis.call('SET', UNTIL, now + tonumber(ARGV[6]), 'PX', ttl)\n"
"  end\n"
"  remember(ARGV[5])\n"
"  redis.call('PUBLISH', channel, ARGV[5])\n"
"  return 1\n"
"end\n"
/* shared: the fleet's state machine */
"local id, timeout, quorum = ARGV[6], tonumber(ARGV[9]), tonumber(ARGV[10])\n"
"local quiet = ARGV[11] == '1'\n"
"local function message(state, left)\n"
"  return cjson.encode({serviceId = name, state = state, ts = now, forcedOpen = false,\n"
"    recovered = false, origin = id, retryAfterMs = left})\n"
"end\n"
"local function open_fleet()\n"
"  redis.call('SET', S, 'open', 'PX', ttl)\n"
"  redis.call('SET', OPENED, now, 'PX', ttl)\n"
"  redis.call('SET', UNTIL, now + timeout, 'PX', ttl)\n"
"  redis.call('DEL', COUNT, SUCC, LEASE, TRIPPED)\n"
"  if not quiet then\n"
"    local m = message('open', timeout)\n"
"    remember(m)\n"
"    redis.call('PUBLISH', channel, m)\n"
"  end\n"
"  return {'open', timeout, 1}\n"
"end\n"
"local state = redis.call('GET', S) or 'closed'\n"
"local deadline = tonumber(redis.call('GET', UNTIL) or '0')\n"
"if state == 'forced-open' then return {state, -1} end\n"
"if state == 'open' and now < deadline then return {'open', deadline - now} end\n"
"if state == 'open' then state = 'half-open' end\n"
"if op == 'trip' then\n"
"  redis.call('ZADD', TRIPPED, now, id)\n"
"  redis.call('ZREMRANGEBYSCORE', TRIPPED, '-inf', now - timeout)\n"
"  redis.call('PEXPIRE', TRIPPED, ttl)\n"
"  if state == 'closed' and redis.call('ZCARD', TRIPPED) >= quorum then\n"
"    return open_fleet()\n"
"  end\n"
"  return {state, 0}\n"
"end\n"
"local failed = ARGV[5] == 'failure'\n"
"if state == 'closed' then\n"
"  if quorum > 1 then return {'closed', 0} end\n"
"  if failed then\n"
"    local n = redis.call('INCR', COUNT)\n"
"    redis.call('PEXPIRE', COUNT, ttl)\n"
"    if n >= tonumber(ARGV[7]) then return open_fleet() end\n"
"  elseif redis.call('EXISTS', COUNT) == 1 then\n"
"    redis.call('DEL', COUNT)\n"
"  end\n"
"  return {'closed', 0}\n"
"end\n"
/* half-open: only the holder of the probe lease reports for the fleet */
"if redis.call('GET', LEASE) ~= id then return {'half-open', 0} end\n"
"redis.call('DEL', LEASE)\n"
"if failed then return open_fleet() end\n"
"local n = redis.call('INCR', SUCC)\n"
"redis.call('PEXPIRE', SUCC, ttl)\n"
"if n < tonumber(ARGV[8]) then return {'half-open', 0} end\n"
"redis.call('SET', S, 'closed', 'PX', ttl)\n"
"redis.call('DEL', COUNT, OPENED, UNTIL, SUCC, TRIPPED)\n"
"forget_unless_forced()\n"
"if not quiet then redis.call('PUBLISH', channel, message('closed', nil)) end\n"
"return {'closed', 0, 1}\n";

#endif
