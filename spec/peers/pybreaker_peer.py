#!/usr/bin/python3
"""A pybreaker service for the interoperability spec (spec/37-...).

Its storage is a `CircuitBreakerStorage` subclass as a pybreaker service
writes one: every field in its own key `<prefix>:<name>:<field>`, `state`
read on every call, `counter` increased with INCRBY, `opened_at` written
as `datetime.isoformat()` (or, with --opened-at epoch, as epoch seconds from
`datetime.timestamp()`) and read back in either form.

It runs under the real pybreaker when `<repo>/peers/pybreaker/src` holds it
(see fetch-note.md), else under `StandIn`, a small copy of pybreaker's state
machine that makes the same storage calls in the same order and raises the
same ValueError on an unknown state.

Driven one command a line on stdin, one answer a line on stdout:
  call ok | call fail  -> ok | failed | tripped | rejected | error <message>
  state                -> the storage's state (`closed` when the key is absent)
  open | close         -> ok (the breaker's own open() / close())
  get FIELD            -> the key's value, or nil
  now T | advance S    -> ok (the breaker's clock: epoch seconds T, or S more)
  impl                 -> real | stand-in
  quit
"""
import argparse
import os
import sys
import threading
from datetime import datetime, timedelta, timezone

import redis

UTC = timezone.utc
HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "..", "peers", "pybreaker", "src")


class Clock:
    """The time the breaker sees: real until `now`/`advance` set it."""

    def __init__(self):
        self.fixed = None

    def now(self):
        return self.fixed if self.fixed is not None else datetime.now(UTC)


CLOCK = Clock()


class ClockDatetime(datetime):
    """pybreaker calls `datetime.now(UTC)`: this one answers from CLOCK."""

    @classmethod
    def now(cls, tz=None):
        t = CLOCK.now()
        return t.astimezone(tz) if tz else t.replace(tzinfo=None)


def load_real():
    if not os.path.isdir(os.path.join(REAL, "pybreaker")):
        return None
    sys.path.insert(0, REAL)
    import pybreaker

    pybreaker.datetime = ClockDatetime  # the module's own `datetime` name
    return pybreaker


class CircuitBreakerError(Exception):
    pass


class StandInStorageBase:
    def __init__(self, name):
        self._name = name


class StandIn:
    """pybreaker's CircuitBreaker, reduced to what touches the storage."""

    STATES = ("closed", "open", "half-open")

    def __init__(self, fail_max, reset_timeout, success_threshold, state_storage, name):
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._success_threshold = success_threshold
        self._state_storage = state_storage
        self._lock = threading.RLock()
        self._state = self._create(self.current_state, notify=False)

    @property
    def current_state(self):
        return self._state_storage.state

    def _create(self, name, notify):
        if name not in self.STATES:
            raise ValueError(
                "Unknown state {!r}, valid states: {}".format(name, ", ".join(self.STATES)))
        if notify:
            if name == "closed":
                self._state_storage.reset_counter()
            else:
                self._state_storage.reset_success_counter()
        return name

    @property
    def state(self):
        if self.current_state != self._state:
            self._state = self._create(self.current_state, notify=True)
        return self._state

    def _set(self, name):
        self._state = self._create(name, notify=True)

    # pybreaker writes `self.state = self._state_storage.state = X`: Python
    # assigns left to right, so the cached state (and its counter reset)
    # comes before the storage's state.
    def open(self):
        self._state_storage.opened_at = CLOCK.now()
        self._set("open")
        self._state_storage.state = "open"
        return True

    def half_open(self):
        self._set("half-open")
        self._state_storage.state = "half-open"

    def close(self):
        self._state_storage.reset_success_counter()
        self._set("closed")
        self._state_storage.state = "closed"

    def call(self, func):
        with self._lock:
            state = self.state
            if state == "open":
                opened_at = self._state_storage.opened_at
                timeout = timedelta(seconds=self._reset_timeout)
                if opened_at and CLOCK.now() < opened_at + timeout:
                    raise CircuitBreakerError("Timeout not elapsed yet, circuit breaker still open")
                self.half_open()
                return self.call(func)
            try:
                ret = func()
            except BaseException as exc:
                self._state_storage.increment_counter()
                if state == "closed":
                    if self._state_storage.counter >= self._fail_max:
                        self.open()
                        raise CircuitBreakerError(
                            "Failures threshold reached, circuit breaker opened") from exc
                else:  # half-open: the trial failed
                    self.open()
                    raise CircuitBreakerError("Trial call failed, circuit breaker opened") from exc
                raise
            self._state_storage.reset_counter()
            if state == "half-open":
                self._state_storage.increment_success_counter()
                if self._state_storage.success_counter >= self._success_threshold:
                    self.close()
            return ret


def make_storage(base, r, prefix, name, opened_at_form):
    class RedisStorage(base):
        """circuit_breaker:{name}:{field}, one key per field."""

        def __init__(self):
            super().__init__(name)

        def _key(self, field):
            return "{}:{}:{}".format(prefix, name, field)

        @property
        def state(self):
            v = r.get(self._key("state"))
            return v.decode() if v is not None else "closed"

        @state.setter
        def state(self, state):
            r.set(self._key("state"), state)

        def increment_counter(self):
            r.incrby(self._key("counter"), 1)

        def reset_counter(self):
            r.set(self._key("counter"), 0)

        def increment_success_counter(self):
            r.incrby(self._key("success_counter"), 1)

        def reset_success_counter(self):
            r.set(self._key("success_counter"), 0)

        @property
        def counter(self):
            return int(r.get(self._key("counter")) or 0)

        @property
        def success_counter(self):
            return int(r.get(self._key("success_counter")) or 0)

        @property
        def opened_at(self):
            v = r.get(self._key("opened_at"))
            if v is None:
                return None
            v = v.decode()
            try:
                return datetime.fromtimestamp(float(v), UTC)
            except ValueError:
                t = datetime.fromisoformat(v)  # raises on anything else, as a service would
                return t if t.tzinfo else t.replace(tzinfo=UTC)

        @opened_at.setter
        def opened_at(self, when):
            if opened_at_form == "epoch":
                r.set(self._key("opened_at"), repr(when.timestamp()))
            else:
                r.set(self._key("opened_at"), when.isoformat())

    return RedisStorage()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--prefix", default="circuit_breaker")
    ap.add_argument("--opened-at", choices=("iso", "epoch"), default="iso")
    ap.add_argument("--impl", choices=("auto", "real", "stand-in"), default="auto")
    ap.add_argument("--fail-max", type=int, default=5)
    ap.add_argument("--reset-timeout", type=float, default=30)
    ap.add_argument("--success-threshold", type=int, default=2)
    a = ap.parse_args()

    pb = load_real() if a.impl != "stand-in" else None
    if a.impl == "real" and pb is None:
        sys.exit("pybreaker_peer: --impl real but no pybreaker under " + REAL)
    r = redis.Redis.from_url(a.url, socket_timeout=5)
    base = pb.CircuitBreakerStorage if pb else StandInStorageBase
    storage = make_storage(base, r, a.prefix, a.name, a.opened_at)
    kind = pb.CircuitBreaker if pb else StandIn
    breaker = kind(fail_max=a.fail_max, reset_timeout=a.reset_timeout,
                   success_threshold=a.success_threshold, state_storage=storage, name=a.name)
    rejection = pb.CircuitBreakerError if pb else CircuitBreakerError

    def call(ok):
        ran = []

        def fn():
            ran.append(True)
            if not ok:
                raise RuntimeError("provider failed")
            return "fine"

        try:
            breaker.call(fn)
            return "ok"
        except rejection:
            return "tripped" if ran else "rejected"
        except RuntimeError:
            return "failed"
        except Exception as e:  # an unknown state: what the issue saw crash a service
            return "error {}: {}".format(type(e).__name__, e)

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        if cmd == "quit":
            break
        elif cmd == "call" and args in (["ok"], ["fail"]):
            out = call(args[0] == "ok")
        elif cmd == "state":
            out = storage.state
        elif cmd == "open":
            breaker.open()
            out = "ok"
        elif cmd == "close":
            breaker.close()
            out = "ok"
        elif cmd == "get" and len(args) == 1:
            v = r.get("{}:{}:{}".format(a.prefix, a.name, args[0]))
            out = v.decode() if v is not None else "nil"
        elif cmd == "now" and len(args) == 1:
            CLOCK.fixed = datetime.fromtimestamp(float(args[0]), UTC)
            out = "ok"
        elif cmd == "advance" and len(args) == 1:
            CLOCK.fixed = CLOCK.now() + timedelta(seconds=float(args[0]))
            out = "ok"
        elif cmd == "impl":
            out = "real" if pb else "stand-in"
        else:
            out = "error unknown command: " + line.strip()
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
