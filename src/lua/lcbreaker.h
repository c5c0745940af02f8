/* lcbreaker.h -- what the binding's files share.  The only place outside
 * src/lua/ that sees Lua is the host. */
#ifndef LCBREAKER_H
#define LCBREAKER_H

#include <lauxlib.h>
#include <lua.h>

#include "cbreaker.h"

/* The module's entry point (lcore.c), the one symbol core.so exports. */
CB_API int luaopen_cbreaker_core(lua_State *L);

/* Metatable names (`__name` gives error messages and tostring for free). */
#define CB_BREAKER_MT "cbreaker.Breaker"
#define CB_CLOCK_MT "cbreaker.ManualClock"
#define CB_REJECTION_MT "cbreaker.Rejection"
#define CB_BANDIT_MT "cbreaker.Bandit"
#define CB_REGISTRY_MT "cbreaker.Registry"
#define CB_STORE_MT "cbreaker.Store"
#define CB_MODULE_KEY "cbreaker.module"  /* registry key of the module state */
#define CB_BOXES_KEY "cbreaker.boxes"    /* weak table: box pointer -> box */

/* ---- module state ---------------------------------------------------------- */

/* State changes are queued by the core's callback and handed to Lua once the
 * core function has returned, so Lua never runs inside a core frame. */
typedef struct cb_lua_event {
    void *box;  /* the lbreaker whose breaker changed */
    unsigned char from, to, reason;
} cb_lua_event;

#define CB_LUA_MAX_EVENTS 64

typedef struct cb_lua_module {
    cb_lua_event events[CB_LUA_MAX_EVENTS];
    unsigned head, count;  /* a FIFO ring */
    unsigned long dropped; /* events lost to a full ring */
} cb_lua_module;

/* The module state of this lua_State (created by luaopen_cbreaker_core). */
cb_lua_module *cb_lua_module_get(lua_State *L);

/* Runs the Lua callbacks of queued events.  An error raised by one is
 * re-raised once the queue is empty.  Call after any core function that can
 * change a breaker's state. */
void cb_lua_dispatch(lua_State *L, cb_lua_module *m);

static inline void cb_lua_flush(lua_State *L, cb_lua_module *m) {
    if (m->count) cb_lua_dispatch(L, m);
}

/* ---- breaker box ------------------------------------------------------------ */

typedef struct lbreaker {
    void *self;           /* the box's own address: see self() in lbreaker.c */
    cb_breaker *b;        /* NULL once closed or removed from its registry */
    cb_lua_module *m;
    unsigned char owned;  /* frees b on close; a registry's breaker is borrowed */
    unsigned char measure;  /* call() times fn (slow-call tracking is on) */
    const char *gone;     /* why b is NULL: "closed" or "removed" */
} lbreaker;

/* User values of a breaker box. */
enum { CB_UV_ON_CHANGE = 1, CB_UV_CLASSIFY, CB_UV_CLOCK, CB_UV_OWNER, CB_UV_STORE,
       CB_UV_COUNT = 5 };

/* Returns the live breaker at `idx`, raising a clear error for anything else. */
lbreaker *cb_lua_checkbox(lua_State *L, int idx);
cb_breaker *cb_lua_checkbreaker(lua_State *L, int idx);

/* Pushes a new box for `b`: owned (freed with the box) or borrowed (from a
 * registry, whose userdata should be stored with cb_lua_box_setowner). */
lbreaker *cb_lua_pushbreaker(lua_State *L, cb_breaker *b, int owned);

/* Closes the box: frees an owned breaker, detaches a borrowed one.  `why`
 * is shown by methods called later ("closed", "removed from its registry"). */
void cb_lua_box_close(lua_State *L, lbreaker *box, const char *why);

/* ---- options ----------------------------------------------------------------- */

/* Handles a key of an options table that is not a breaker option: value at
 * the top of the stack.  Returns 1 when handled, 0 when unknown. */
typedef int (*cb_lua_optfn)(lua_State *L, const char *key, void *ud);

/* Reads the breaker options in the table at `idx` into `o` (which holds the
 * defaults).  `ctx` prefixes error messages ("cbreaker.new", "defaults");
 * keys that are not breaker options go to `other` (may be NULL), whose
 * accepted names `extra` (NULL-terminated, may be NULL) join the "did you
 * mean" search.  Raises on an unknown key, a wrong type or a bad value. */
void cb_lua_read_breaker_opts(lua_State *L, int idx, cb_breaker_opts *o,
                              const char *ctx, cb_lua_optfn other, void *ud,
                              const char *const *extra);

/* Raises "CTX: unknown option 'KEY' (did you mean 'NAME'?)". */
int cb_lua_unknown_option(lua_State *L, const char *ctx, const char *key,
                          const char *const *names, const char *const *extra);

/* The closest of `names` to `s`, or NULL when none is close. */
const char *cb_lua_closest(const char *s, const char *const *names,
                           const char *const *extra);

/* Reads a manual clock at `idx` into `c` (raises for anything else); the
 * clock userdata must be kept alive by the caller. */
void cb_lua_checkclock(lua_State *L, int idx, cb_clock *c, const char *ctx);

/* ---- module parts ---------------------------------------------------------- */

/* Each adds its functions to the module table at the top of the stack. */
void cb_lua_open_opts(lua_State *L);
void cb_lua_open_clock(lua_State *L);
void cb_lua_open_breaker(lua_State *L);
void cb_lua_open_rejection(lua_State *L);
void cb_lua_open_bandit(lua_State *L);
void cb_lua_open_registry(lua_State *L);
void cb_lua_open_store(lua_State *L);

/* Attaches the breaker of box `bidx` to the store at `sidx` (raising, with
 * `ctx`, when it cannot), keeps the store alive in the box's CB_UV_STORE and
 * runs the callbacks of what the boot import changed. */
void cb_lua_store_attach(lua_State *L, int sidx, int bidx, const char *ctx);

/* Pushes a rejection for `b` refused with `v`. */
void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v);

#endif
