/* test_signature.c -- the channel's HMAC-SHA256 signatures (message.c):
 * a known vector, every single-byte tamper rejected, decodable by a peer
 * without a secret. */
#include <string.h>

#include "store_impl.h"
#include "test.h"

static const unsigned char key[] = "0123456789abcdef-shared";
#define KEYLEN (sizeof key - 1)

int main(void) {
    char buf[CB_MESSAGE_MAX + 1];
    const char body[] = "{\"serviceId\":\"svc\",\"state\":\"open\",\"ts\":1}";
    size_t blen = strlen(body);
    memcpy(buf, body, blen + 1);

    test("sign appends the sig field");
    int n = cb_message_sign(buf, blen, sizeof buf, key, KEYLEN);
    test_cond(n == (int)(blen - 1 + CB_SIG_SUFFIX_LEN) && strlen(buf) == (size_t)n &&
              strncmp(buf, body, blen - 1) == 0 && strstr(buf, ",\"sig\":\"") != NULL);

    /* openssl dgst -sha256 -hmac '0123456789abcdef-shared' of body */
    test("matches an independent HMAC-SHA256");
    test_cond(strstr(buf, ",\"sig\":\"f6e2ff4c876d9e68112761c8ab0559c8efcf0781e956a2dfd915b178c66b66a0"
                          "\"}") != NULL);

    test("verifies with the key");
    test_cond(cb_message_verify(buf, (size_t)n, key, KEYLEN) == CB_SIG_OK);

    test("a wrong key is a bad signature");
    test_cond(cb_message_verify(buf, (size_t)n, (const unsigned char *)"another key here", 16) ==
              CB_SIG_BAD);

    test("every single-byte change is rejected");
    int all = 1;
    for (int i = 0; i < n; i++) {
        char t[CB_MESSAGE_MAX + 1];
        memcpy(t, buf, (size_t)n);
        t[i] ^= 0x01;
        if (cb_message_verify(t, (size_t)n, key, KEYLEN) == CB_SIG_OK) all = 0;
    }
    test_cond(all);

    test("an unsigned or truncated message is missing its signature");
    test_cond(cb_message_verify(body, blen, key, KEYLEN) == CB_SIG_MISSING &&
              cb_message_verify(buf, (size_t)n - 1, key, KEYLEN) == CB_SIG_MISSING &&
              cb_message_verify("", 0, key, KEYLEN) == CB_SIG_MISSING &&
              cb_message_verify(buf + 1, (size_t)n - 1, key, KEYLEN) == CB_SIG_BAD);

    test("a peer without a secret decodes the signed message");
    cb_message m;
    test_cond(cb_message_decode(buf, (size_t)n, &m) == NULL && strcmp(m.service_id, "svc") == 0 &&
              m.open);

    test("sign refuses what does not fit or is not an object");
    char small[80];
    memcpy(small, body, blen + 1);
    test_cond(cb_message_sign(small, blen, sizeof small, key, KEYLEN) == -1 &&
              cb_message_sign(buf, 1, sizeof buf, key, KEYLEN) == -1);
    return test_report();
}
