/* message.c -- the channel messages existing services publish, in JSON
 * through cJSON.
 *
 * Decoding is strict about the fields the format defines (a wrong type is a
 * malformed message, counted and ignored by the store) and lenient about
 * the rest (extra fields are allowed, so other services can share the
 * channel). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "store_impl.h"

int cb_message_encode(const cb_message *m, char *buf, size_t cap) {
    if (cap < 2 || cap > (size_t)1 << 30) return -1;
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    int ok = cJSON_AddStringToObject(o, "serviceId", m->service_id) &&
             cJSON_AddStringToObject(o, "state", m->open ? "open" : "closed") &&
             cJSON_AddNumberToObject(o, "ts", floor(m->ts)) &&
             cJSON_AddBoolToObject(o, "forcedOpen", m->forced_open) &&
             cJSON_AddBoolToObject(o, "recovered", m->recovered) &&
             (!m->origin[0] || cJSON_AddStringToObject(o, "origin", m->origin)) &&
             (m->retry_after_ms < 0 ||
              cJSON_AddNumberToObject(o, "retryAfterMs", ceil(m->retry_after_ms))) &&
             (!(m->seq > 0) || cJSON_AddNumberToObject(o, "seq", floor(m->seq)));
    /* PrintPreallocated wants 5 spare bytes to be safe (cJSON.h). */
    ok = ok && cJSON_PrintPreallocated(o, buf, (int)cap - 5, 0);
    cJSON_Delete(o);
    return ok ? (int)strlen(buf) : -1;
}

/* Copies the string field `key` into dst[cap].  Absent is fine (dst = "")
 * unless `required`. */
static const char *get_string(const cJSON *o, const char *key, char *dst, size_t cap,
                              int required, const char *missing, const char *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    dst[0] = '\0';
    if (!v) return required ? missing : NULL;
    if (!cJSON_IsString(v) || !v->valuestring) return bad;
    size_t n = strlen(v->valuestring);
    if (n >= cap || (required && n == 0)) return bad;
    memcpy(dst, v->valuestring, n + 1);
    return NULL;
}

static const char *get_bool(const cJSON *o, const char *key, unsigned char *dst,
                            const char *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *dst = 0;
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsBool(v)) return bad;
    *dst = cJSON_IsTrue(v) ? 1 : 0;
    return NULL;
}

static const char *get_number(const cJSON *o, const char *key, double *dst, double absent,
                              const char *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *dst = absent;
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0) return bad;
    *dst = v->valuedouble;
    return NULL;
}

static const char *decode_object(const cJSON *o, cb_message *m) {
    const char *why;
    char state[8];
    if (!cJSON_IsObject(o)) return "not a JSON object";
    if ((why = get_string(o, "serviceId", m->service_id, sizeof m->service_id, 1,
                          "serviceId missing", "serviceId must be a non-empty string "
                          "shorter than 256 bytes")))
        return why;
    if ((why = get_string(o, "state", state, sizeof state, 1, "state missing",
                          "state must be \"open\" or \"closed\"")))
        return why;
    if (strcmp(state, "open") == 0) m->open = 1;
    else if (strcmp(state, "closed") == 0) m->open = 0;
    else return "state must be \"open\" or \"closed\"";
    if ((why = get_number(o, "ts", &m->ts, 0, "ts must be a number of ms >= 0")) ||
        (why = get_bool(o, "forcedOpen", &m->forced_open, "forcedOpen must be a boolean")) ||
        (why = get_bool(o, "recovered", &m->recovered, "recovered must be a boolean")) ||
        (why = get_string(o, "origin", m->origin, sizeof m->origin, 0, NULL,
                          "origin must be a string shorter than 64 bytes")) ||
        (why = get_number(o, "retryAfterMs", &m->retry_after_ms, -1,
                          "retryAfterMs must be a number of ms >= 0")) ||
        (why = get_number(o, "seq", &m->seq, 0, "seq must be a number >= 0")))
        return why;
    return NULL;
}

const char *cb_message_decode(const char *s, size_t len, cb_message *m) {
    memset(m, 0, sizeof *m);
    m->retry_after_ms = -1;
    if (len > CB_MESSAGE_MAX) return "message too long";
    if (memchr(s, '\0', len)) return "not JSON";  /* cJSON would stop there */
    char buf[CB_MESSAGE_MAX + 1];  /* NUL-terminated copy: pubsub payloads are binary */
    memcpy(buf, s, len);
    buf[len] = '\0';
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(buf, &end, 1);
    if (!o) return "not JSON";
    const char *why = decode_object(o, m);
    cJSON_Delete(o);
    return why;
}

/* ---- signatures ------------------------------------------------------------ */

static const char sig_head[] = ",\"sig\":\"";

static int mac(const char *body, size_t len, const unsigned char *key, size_t keylen,
               char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (keylen > INT32_MAX ||
        !HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)body, len, md, &mdlen) ||
        mdlen != 32)
        return -1;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

int cb_message_sign(char *json, size_t len, size_t cap, const unsigned char *key,
                    size_t keylen) {
    char hex[65];
    if (len < 2 || json[len - 1] != '}' || cap < len + CB_SIG_SUFFIX_LEN + 1 ||
        mac(json, len, key, keylen, hex) != 0)
        return -1;
    char *at = json + len - 1;  /* overwrites the closing brace */
    memcpy(at, sig_head, sizeof sig_head - 1);
    at += sizeof sig_head - 1;
    memcpy(at, hex, 64);
    memcpy(at + 64, "\"}", 3);
    return (int)(len - 1 + CB_SIG_SUFFIX_LEN);  /* its closing brace became the suffix's */
}

cb_sig_check cb_message_verify(const char *s, size_t len, const unsigned char *key,
                               size_t keylen) {
    /* The signed body is everything before the suffix, closed by '}'. */
    if (len < CB_SIG_SUFFIX_LEN + 2 || len > CB_MESSAGE_MAX) return CB_SIG_MISSING;
    const char *suffix = s + len - CB_SIG_SUFFIX_LEN;
    if (memcmp(suffix, sig_head, sizeof sig_head - 1) != 0 || s[len - 2] != '"' ||
        s[len - 1] != '}')
        return CB_SIG_MISSING;
    char body[CB_MESSAGE_MAX + 1], hex[65];
    size_t blen = len - CB_SIG_SUFFIX_LEN;
    memcpy(body, s, blen);
    body[blen++] = '}';
    if (mac(body, blen, key, keylen, hex) != 0) return CB_SIG_BAD;
    return CRYPTO_memcmp(hex, suffix + sizeof sig_head - 1, 64) == 0 ? CB_SIG_OK : CB_SIG_BAD;
}

cb_peer_state cb_message_peer_state(const cb_message *m) {
    if (m->recovered) return CB_PEER_RECOVERED;  /* authoritative, checked first */
    if (!m->open) return CB_PEER_CLOSED;
    return m->forced_open ? CB_PEER_FORCED_OPEN : CB_PEER_OPEN;
}
