/* p11_fault_shim: a PKCS#11 module for tests that wraps a real one and fails chosen calls.
 *
 * Load it instead of the real module (hsm.module in the daemon's config). Its C_GetFunctionList
 * dlopens the module named by OTD_P11_SHIM_TARGET (default /usr/lib/softhsm/libsofthsm2.so) and
 * returns a copy of that module's CK_FUNCTION_LIST in which every entry (all 68 of PKCS#11 v2.40)
 * is a wrapper: it consults the fault rules, then forwards the call unchanged.
 *
 * Environment (read once, when the module is first loaded):
 *   OTD_P11_SHIM_TARGET   the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   OTD_P11_SHIM_CONTROL  the control file with the fault rules (unset or missing: no faults)
 *   OTD_P11_SHIM_STATS    optional; one line is appended per event:
 *                           load target=PATH pid=N        the real module was loaded
 *                           rules n=N                     the control file was (re)read
 *                           error control:LINE: WHAT      a rule was rejected (and ignored)
 *                           fault FUNCTION CKR_NAME total=N   a fault was injected
 *   OTD_P11_SHIM_SEED     optional seed for prob= (default: time and pid)
 *
 * Control file: one rule per line, '#' starts a comment, an empty file means no faults.
 *   <function> <rv> [count=N] [skip=N] [prob=P]
 *   function  C_Sign, or * (every function), or a prefix ending in * (C_Decrypt* = C_Decrypt,
 *             C_DecryptInit, C_DecryptUpdate, ...)
 *   rv        a CKR_ name (CKR_DEVICE_ERROR) or a number (0x30, 48)
 *   count=N   fail only the next N matching calls (default: every matching call)
 *   skip=N    let the first N matching calls through before failing
 *   prob=P    fail a matching call with probability P (0..1, default 1); a call let through by
 *             prob does not use up count
 * Rules are tried in file order; the first that fires decides. The file is checked at most every
 * 20 ms (stat: inode, size, mtime); when it changed, it is read again and every count/skip starts
 * afresh. Write it atomically (write a temp file, rename it over the control file).
 *
 * What a fault does: the call returns the rule's rv without reaching the real module, with two
 * exceptions that keep the real module's state the way PKCS#11 says a failed call leaves it:
 *   - C_Finalize is forwarded first (the library releases everything whatever it answers), then
 *     the fault is returned; otherwise a later C_Initialize would see ALREADY_INITIALIZED;
 *   - a failing C_Encrypt/C_Decrypt/C_Digest/C_Sign/C_Verify/C_SignRecover/C_VerifyRecover, their
 *     *Update and *Final variants, and C_DigestKey end the active operation: the shim runs the
 *     real operation to its end with scratch buffers (the caller's buffers are not touched).
 *     The dual-function updates (C_DigestEncryptUpdate, ...) leave their operations active.
 * A faulted C_CloseSession/C_Logout does not close/log out in the real module.
 *
 * Thread safety: the rule state is guarded by one mutex; the real module's calls are made without
 * it (the real module does its own locking, as initialised by the caller).
 */

#define _DEFAULT_SOURCE /* explicit_bzero, clock_gettime, POSIX 2008 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h> /* the header hsm/internal/pkcs11.h uses (CRYPTOKI_COMPAT names) */

#define SHIM_EXPORT __attribute__((visibility("default")))

enum { kMaxRules = 32, kMaxLine = 256, kMaxName = 48, kCheckIntervalNs = 20 * 1000 * 1000 };

struct rule {
  char function[kMaxName]; /* "*", "C_Sign", or a prefix "C_Decrypt*" */
  CK_RV rv;
  long count; /* calls still to fail; -1 = unlimited */
  long skip;  /* matching calls still to let through first */
  double prob;
};

/* --- globals (a dlopen'd module has nowhere else to keep its state) ----------------------------
 * g_load_once/g_load_rv: the real module is loaded once per process (C_GetFunctionList may be
 *   called many times); g_target is its dlopen handle (closed when the shim is unloaded), g_real
 *   its function list, g_list the list handed out by the shim.
 * g_mu guards everything in `g_state`: the control/stats paths (set once at load), the rules, the
 *   control file's identity, the time of the last check, the PRNG and the stats fd. */
static pthread_once_t g_load_once = PTHREAD_ONCE_INIT;
static CK_RV g_load_rv = CKR_GENERAL_ERROR;
static void* g_target;
static CK_FUNCTION_LIST* g_real;
static CK_FUNCTION_LIST g_list;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char control[4096];
  char stats[4096];
  struct rule rules[kMaxRules];
  int nrules;
  int have_file; /* identity below is valid */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  long long last_check_ns;
  unsigned long long rng;
  int stats_fd;
  unsigned long long injected;
} g_state = {.stats_fd = -1, .last_check_ns = -kCheckIntervalNs};

/* --- CKR names -------------------------------------------------------------------------------- */

#define CKR_ENTRY(x) \
  { x, #x }
static const struct {
  CK_RV rv;
  const char* name;
} kCkrNames[] = {
    CKR_ENTRY(CKR_OK),
    CKR_ENTRY(CKR_CANCEL),
    CKR_ENTRY(CKR_HOST_MEMORY),
    CKR_ENTRY(CKR_SLOT_ID_INVALID),
    CKR_ENTRY(CKR_GENERAL_ERROR),
    CKR_ENTRY(CKR_FUNCTION_FAILED),
    CKR_ENTRY(CKR_ARGUMENTS_BAD),
    CKR_ENTRY(CKR_CANT_LOCK),
    CKR_ENTRY(CKR_ATTRIBUTE_SENSITIVE),
    CKR_ENTRY(CKR_ATTRIBUTE_VALUE_INVALID),
    CKR_ENTRY(CKR_DATA_INVALID),
    CKR_ENTRY(CKR_DATA_LEN_RANGE),
    CKR_ENTRY(CKR_DEVICE_ERROR),
    CKR_ENTRY(CKR_DEVICE_MEMORY),
    CKR_ENTRY(CKR_DEVICE_REMOVED),
    CKR_ENTRY(CKR_ENCRYPTED_DATA_INVALID),
    CKR_ENTRY(CKR_ENCRYPTED_DATA_LEN_RANGE),
    CKR_ENTRY(CKR_FUNCTION_CANCELED),
    CKR_ENTRY(CKR_FUNCTION_NOT_SUPPORTED),
    CKR_ENTRY(CKR_KEY_HANDLE_INVALID),
    CKR_ENTRY(CKR_KEY_SIZE_RANGE),
    CKR_ENTRY(CKR_KEY_TYPE_INCONSISTENT),
    CKR_ENTRY(CKR_KEY_FUNCTION_NOT_PERMITTED),
    CKR_ENTRY(CKR_MECHANISM_INVALID),
    CKR_ENTRY(CKR_MECHANISM_PARAM_INVALID),
    CKR_ENTRY(CKR_OBJECT_HANDLE_INVALID),
    CKR_ENTRY(CKR_OPERATION_ACTIVE),
    CKR_ENTRY(CKR_OPERATION_NOT_INITIALIZED),
    CKR_ENTRY(CKR_PIN_INCORRECT),
    CKR_ENTRY(CKR_PIN_INVALID),
    CKR_ENTRY(CKR_PIN_LEN_RANGE),
    CKR_ENTRY(CKR_PIN_EXPIRED),
    CKR_ENTRY(CKR_PIN_LOCKED),
    CKR_ENTRY(CKR_SESSION_CLOSED),
    CKR_ENTRY(CKR_SESSION_COUNT),
    CKR_ENTRY(CKR_SESSION_HANDLE_INVALID),
    CKR_ENTRY(CKR_SESSION_READ_ONLY),
    CKR_ENTRY(CKR_SIGNATURE_INVALID),
    CKR_ENTRY(CKR_SIGNATURE_LEN_RANGE),
    CKR_ENTRY(CKR_TEMPLATE_INCOMPLETE),
    CKR_ENTRY(CKR_TEMPLATE_INCONSISTENT),
    CKR_ENTRY(CKR_TOKEN_NOT_PRESENT),
    CKR_ENTRY(CKR_TOKEN_NOT_RECOGNIZED),
    CKR_ENTRY(CKR_TOKEN_WRITE_PROTECTED),
    CKR_ENTRY(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    CKR_ENTRY(CKR_USER_ALREADY_LOGGED_IN),
    CKR_ENTRY(CKR_USER_NOT_LOGGED_IN),
    CKR_ENTRY(CKR_USER_PIN_NOT_INITIALIZED),
    CKR_ENTRY(CKR_WRAPPED_KEY_INVALID),
    CKR_ENTRY(CKR_WRAPPED_KEY_LEN_RANGE),
    CKR_ENTRY(CKR_WRAPPING_KEY_HANDLE_INVALID),
    CKR_ENTRY(CKR_RANDOM_NO_RNG),
    CKR_ENTRY(CKR_BUFFER_TOO_SMALL),
    CKR_ENTRY(CKR_CRYPTOKI_NOT_INITIALIZED),
    CKR_ENTRY(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    CKR_ENTRY(CKR_FUNCTION_REJECTED),
};

static const char* ckr_name(CK_RV rv, char* buf, size_t n) {
  for (size_t i = 0; i < sizeof kCkrNames / sizeof kCkrNames[0]; ++i) {
    if (kCkrNames[i].rv == rv) {
      return kCkrNames[i].name;
    }
  }
  snprintf(buf, n, "0x%lx", (unsigned long)rv);
  return buf;
}

static int parse_rv(const char* s, CK_RV* rv) {
  for (size_t i = 0; i < sizeof kCkrNames / sizeof kCkrNames[0]; ++i) {
    if (strcmp(kCkrNames[i].name, s) == 0) {
      *rv = kCkrNames[i].rv;
      return 1;
    }
  }
  char* end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || strncmp(s, "CKR_", 4) == 0) {
    return 0;
  }
  *rv = (CK_RV)v;
  return 1;
}

/* --- stats, rules (g_mu held) ----------------------------------------------------------------- */

static void stat_line_locked(const char* line) {
  if (g_state.stats[0] == '\0') {
    return;
  }
  if (g_state.stats_fd < 0) {
    g_state.stats_fd = open(g_state.stats, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (g_state.stats_fd < 0) {
      return;
    }
  }
  ssize_t ignored = write(g_state.stats_fd, line, strlen(line)); /* O_APPEND: one write, one line */
  (void)ignored;
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double random_unit_locked(void) { /* splitmix64 */
  unsigned long long z = (g_state.rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0; /* [0, 1) */
}

static int known_function(const char* name); /* defined with the function table below */

/* Parses one rule; returns NULL or what is wrong with it. */
static const char* parse_rule(char* line, struct rule* r) {
  char* save = NULL;
  char* fn = strtok_r(line, " \t", &save);
  char* rv = strtok_r(NULL, " \t", &save);
  if (fn == NULL || rv == NULL) {
    return "expected: <function> <rv> [count=N] [skip=N] [prob=P]";
  }
  size_t len = strlen(fn);
  if (len >= sizeof r->function) {
    return "function name too long";
  }
  if (fn[len - 1] != '*' && !known_function(fn)) {
    return "unknown function";
  }
  memcpy(r->function, fn, len + 1);
  if (!parse_rv(rv, &r->rv)) {
    return "unknown rv";
  }
  r->count = -1;
  r->skip = 0;
  r->prob = 1.0;
  for (char* opt; (opt = strtok_r(NULL, " \t", &save)) != NULL;) {
    char* end = NULL;
    errno = 0;
    if (strncmp(opt, "count=", 6) == 0) {
      r->count = strtol(opt + 6, &end, 10);
      if (r->count < 0) {
        return "count must be >= 0";
      }
    } else if (strncmp(opt, "skip=", 5) == 0) {
      r->skip = strtol(opt + 5, &end, 10);
      if (r->skip < 0) {
        return "skip must be >= 0";
      }
    } else if (strncmp(opt, "prob=", 5) == 0) {
      r->prob = strtod(opt + 5, &end);
      if (!(r->prob >= 0.0 && r->prob <= 1.0)) {
        return "prob must be in 0..1";
      }
    } else {
      return "unknown option";
    }
    if (errno != 0 || end == NULL || *end != '\0') {
      return "bad number";
    }
  }
  return NULL;
}

static void read_control_locked(void) {
  g_state.nrules = 0;
  FILE* f = fopen(g_state.control, "re");
  if (f == NULL) {
    return;
  }
  char line[kMaxLine];
  char msg[kMaxLine + 64];
  for (int lineno = 1; fgets(line, sizeof line, f) != NULL; ++lineno) {
    line[strcspn(line, "#\r\n")] = '\0';
    if (line[strspn(line, " \t")] == '\0') {
      continue;
    }
    struct rule r;
    const char* err = g_state.nrules == kMaxRules ? "too many rules" : parse_rule(line, &r);
    if (err != NULL) {
      snprintf(msg, sizeof msg, "error control:%d: %s\n", lineno, err);
      stat_line_locked(msg);
      continue;
    }
    g_state.rules[g_state.nrules++] = r;
  }
  fclose(f);
  snprintf(msg, sizeof msg, "rules n=%d\n", g_state.nrules);
  stat_line_locked(msg);
}

/* Re-reads the control file when it changed (checked at most every 20 ms). */
static void refresh_locked(void) {
  if (g_state.control[0] == '\0') {
    return;
  }
  long long now = now_ns();
  if (now - g_state.last_check_ns < kCheckIntervalNs) {
    return;
  }
  g_state.last_check_ns = now;
  struct stat st;
  if (stat(g_state.control, &st) != 0) {
    if (g_state.have_file) {
      g_state.have_file = 0;
      g_state.nrules = 0;
      stat_line_locked("rules n=0\n");
    }
    return;
  }
  if (g_state.have_file && st.st_dev == g_state.dev && st.st_ino == g_state.ino &&
      st.st_size == g_state.size && st.st_mtim.tv_sec == g_state.mtime.tv_sec &&
      st.st_mtim.tv_nsec == g_state.mtime.tv_nsec) {
    return;
  }
  g_state.have_file = 1;
  g_state.dev = st.st_dev;
  g_state.ino = st.st_ino;
  g_state.size = st.st_size;
  g_state.mtime = st.st_mtim;
  read_control_locked();
}

static int rule_matches(const struct rule* r, const char* function) {
  size_t n = strlen(r->function);
  if (r->function[n - 1] == '*') {
    return strncmp(r->function, function, n - 1) == 0;
  }
  return strcmp(r->function, function) == 0;
}

/* 1 and *rv when a fault is to be injected into this call of `function`. */
static int fault_for(const char* function, CK_RV* rv) {
  int fire = 0;
  pthread_mutex_lock(&g_mu);
  refresh_locked();
  for (int i = 0; i < g_state.nrules && !fire; ++i) {
    struct rule* r = &g_state.rules[i];
    if (r->count == 0 || !rule_matches(r, function)) {
      continue;
    }
    if (r->skip > 0) {
      --r->skip;
      continue;
    }
    if (r->prob < 1.0 && random_unit_locked() >= r->prob) {
      continue;
    }
    if (r->count > 0) {
      --r->count;
    }
    *rv = r->rv;
    fire = 1;
  }
  if (fire) {
    char name[32];
    char line[kMaxLine];
    snprintf(line, sizeof line, "fault %s %s total=%llu\n", function,
             ckr_name(*rv, name, sizeof name), ++g_state.injected);
    stat_line_locked(line);
  }
  pthread_mutex_unlock(&g_mu);
  return fire;
}

/* --- ending an operation the caller believes failed ------------------------------------------- */

/* Single-part call (C_Encrypt, C_Sign, ...): length query, then the call with a scratch buffer. */
static void end_single(CK_C_Encrypt f, CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len) {
  CK_ULONG n = 0;
  if (f == NULL || f(s, in, in_len, NULL, &n) != CKR_OK) {
    return; /* an error already ended it */
  }
  CK_ULONG cap = n > 0 ? n : 1;
  CK_BYTE_PTR buf = calloc(1, cap);
  if (buf != NULL) {
    n = cap;
    f(s, in, in_len, buf, &n);
    explicit_bzero(buf, cap);
    free(buf);
  }
}

/* Multi-part operation (after a failed *Update or *Final): finish it with a scratch buffer. */
static void end_final(CK_C_EncryptFinal f, CK_SESSION_HANDLE s) {
  CK_ULONG n = 0;
  if (f == NULL || f(s, NULL, &n) != CKR_OK) {
    return;
  }
  CK_ULONG cap = n > 0 ? n : 1;
  CK_BYTE_PTR buf = calloc(1, cap);
  if (buf != NULL) {
    n = cap;
    f(s, buf, &n);
    explicit_bzero(buf, cap);
    free(buf);
  }
}

static void end_verify(CK_SESSION_HANDLE s) {
  CK_BYTE dummy = 0;
  if (g_real->C_VerifyFinal != NULL) {
    g_real->C_VerifyFinal(s, &dummy, 1); /* a wrong MAC: the verification ends */
  }
}

/* --- wrappers --------------------------------------------------------------------------------- */

/* shim_<name>: the fault, if any (after running `end`), else the real function. */
#define SHIM_END(name, params, args, end)                                         \
  static CK_RV shim_##name params {                                               \
    CK_RV fault_rv;                                                               \
    if (fault_for(#name, &fault_rv)) {                                            \
      end;                                                                        \
      return fault_rv;                                                            \
    }                                                                             \
    return g_real->name != NULL ? g_real->name args : CKR_FUNCTION_NOT_SUPPORTED; \
  }
#define SHIM(name, params, args) SHIM_END(name, params, args, (void)0)

typedef CK_SESSION_HANDLE S;
typedef CK_OBJECT_HANDLE O;

SHIM(C_Initialize, (CK_VOID_PTR a), (a))
SHIM_END(C_Finalize, (CK_VOID_PTR r), (r), if (g_real->C_Finalize != NULL) g_real->C_Finalize(r))
SHIM(C_GetInfo, (CK_INFO_PTR i), (i))
SHIM(C_GetSlotList, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))
SHIM(C_GetSlotInfo, (CK_SLOT_ID s, CK_SLOT_INFO_PTR i), (s, i))
SHIM(C_GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
SHIM(C_GetMechanismList, (CK_SLOT_ID s, CK_MECHANISM_TYPE_PTR l, CK_ULONG_PTR n), (s, l, n))
SHIM(C_GetMechanismInfo, (CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR i), (s, t, i))
SHIM(C_InitToken, (CK_SLOT_ID s, CK_UTF8CHAR_PTR p, CK_ULONG n, CK_UTF8CHAR_PTR l), (s, p, n, l))
SHIM(C_InitPIN, (S s, CK_UTF8CHAR_PTR p, CK_ULONG n), (s, p, n))
SHIM(C_SetPIN, (S s, CK_UTF8CHAR_PTR o, CK_ULONG on, CK_UTF8CHAR_PTR p, CK_ULONG pn),
     (s, o, on, p, pn))
SHIM(C_OpenSession, (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h),
     (s, f, a, n, h))
SHIM(C_CloseSession, (S s), (s))
SHIM(C_CloseAllSessions, (CK_SLOT_ID s), (s))
SHIM(C_GetSessionInfo, (S s, CK_SESSION_INFO_PTR i), (s, i))
SHIM(C_GetOperationState, (S s, CK_BYTE_PTR st, CK_ULONG_PTR n), (s, st, n))
SHIM(C_SetOperationState, (S s, CK_BYTE_PTR st, CK_ULONG n, O e, O a), (s, st, n, e, a))
SHIM(C_Login, (S s, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n), (s, u, p, n))
SHIM(C_Logout, (S s), (s))
SHIM(C_CreateObject, (S s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), (s, t, n, o))
SHIM(C_CopyObject, (S s, O o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR c),
     (s, o, t, n, c))
SHIM(C_DestroyObject, (S s, O o), (s, o))
SHIM(C_GetObjectSize, (S s, O o, CK_ULONG_PTR n), (s, o, n))
SHIM(C_GetAttributeValue, (S s, O o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, o, t, n))
SHIM(C_SetAttributeValue, (S s, O o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, o, t, n))
SHIM(C_FindObjectsInit, (S s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n))
SHIM(C_FindObjects, (S s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n), (s, o, max, n))
SHIM(C_FindObjectsFinal, (S s), (s))
SHIM(C_EncryptInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_Encrypt, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_single(g_real->C_Encrypt, s, d, n))
SHIM_END(C_EncryptUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_final(g_real->C_EncryptFinal, s))
SHIM_END(C_EncryptFinal, (S s, CK_BYTE_PTR o, CK_ULONG_PTR on), (s, o, on),
         end_final(g_real->C_EncryptFinal, s))
SHIM(C_DecryptInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_Decrypt, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_single(g_real->C_Decrypt, s, d, n))
SHIM_END(C_DecryptUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_final(g_real->C_DecryptFinal, s))
SHIM_END(C_DecryptFinal, (S s, CK_BYTE_PTR o, CK_ULONG_PTR on), (s, o, on),
         end_final(g_real->C_DecryptFinal, s))
SHIM(C_DigestInit, (S s, CK_MECHANISM_PTR m), (s, m))
SHIM_END(C_Digest, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_single(g_real->C_Digest, s, d, n))
SHIM_END(C_DigestUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n), (s, d, n),
         end_final(g_real->C_DigestFinal, s))
SHIM_END(C_DigestKey, (S s, O k), (s, k), end_final(g_real->C_DigestFinal, s))
SHIM_END(C_DigestFinal, (S s, CK_BYTE_PTR o, CK_ULONG_PTR on), (s, o, on),
         end_final(g_real->C_DigestFinal, s))
SHIM(C_SignInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_Sign, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on), (s, d, n, o, on),
         end_single(g_real->C_Sign, s, d, n))
SHIM_END(C_SignUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n), (s, d, n),
         end_final(g_real->C_SignFinal, s))
SHIM_END(C_SignFinal, (S s, CK_BYTE_PTR o, CK_ULONG_PTR on), (s, o, on),
         end_final(g_real->C_SignFinal, s))
SHIM(C_SignRecoverInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_SignRecover, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, d, n, o, on), end_single(g_real->C_SignRecover, s, d, n))
SHIM(C_VerifyInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_Verify, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG sn),
         (s, d, n, sig, sn), if (g_real->C_Verify != NULL) g_real->C_Verify(s, d, n, sig, sn))
SHIM_END(C_VerifyUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n), (s, d, n), end_verify(s))
SHIM_END(C_VerifyFinal, (S s, CK_BYTE_PTR sig, CK_ULONG sn), (s, sig, sn),
         if (g_real->C_VerifyFinal != NULL) g_real->C_VerifyFinal(s, sig, sn))
SHIM(C_VerifyRecoverInit, (S s, CK_MECHANISM_PTR m, O k), (s, m, k))
SHIM_END(C_VerifyRecover, (S s, CK_BYTE_PTR sig, CK_ULONG sn, CK_BYTE_PTR o, CK_ULONG_PTR on),
         (s, sig, sn, o, on), end_single(g_real->C_VerifyRecover, s, sig, sn))
SHIM(C_DigestEncryptUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (s, d, n, o, on))
SHIM(C_DecryptDigestUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (s, d, n, o, on))
SHIM(C_SignEncryptUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (s, d, n, o, on))
SHIM(C_DecryptVerifyUpdate, (S s, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (s, d, n, o, on))
SHIM(C_GenerateKey,
     (S s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
     (s, m, t, n, k))
SHIM(C_GenerateKeyPair,
     (S s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR vt, CK_ULONG vn,
      CK_OBJECT_HANDLE_PTR pk, CK_OBJECT_HANDLE_PTR vk),
     (s, m, pt, pn, vt, vn, pk, vk))
SHIM(C_WrapKey, (S s, CK_MECHANISM_PTR m, O w, O k, CK_BYTE_PTR o, CK_ULONG_PTR on),
     (s, m, w, k, o, on))
SHIM(C_UnwrapKey,
     (S s, CK_MECHANISM_PTR m, O u, CK_BYTE_PTR w, CK_ULONG wn, CK_ATTRIBUTE_PTR t, CK_ULONG n,
      CK_OBJECT_HANDLE_PTR k),
     (s, m, u, w, wn, t, n, k))
SHIM(C_DeriveKey,
     (S s, CK_MECHANISM_PTR m, O b, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
     (s, m, b, t, n, k))
SHIM(C_SeedRandom, (S s, CK_BYTE_PTR d, CK_ULONG n), (s, d, n))
SHIM(C_GenerateRandom, (S s, CK_BYTE_PTR d, CK_ULONG n), (s, d, n))
SHIM(C_GetFunctionStatus, (S s), (s))
SHIM(C_CancelFunction, (S s), (s))
SHIM(C_WaitForSlotEvent, (CK_FLAGS f, CK_SLOT_ID_PTR s, CK_VOID_PTR r), (f, s, r))

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

/* Every entry of the v2.40 list (the compiler checks each wrapper's type against the member). */
/* One X-macro list, laid out by hand. */
/* clang-format off */
#define SHIM_FUNCTIONS(X)                                                                         \
  X(C_Initialize)                                                                                 \
  X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList) X(C_GetSlotInfo) X(            \
      C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo) X(C_InitToken) X(C_InitPIN)     \
      X(C_SetPIN) X(C_OpenSession) X(C_CloseSession) X(C_CloseAllSessions) X(C_GetSessionInfo) X( \
          C_GetOperationState) X(C_SetOperationState) X(C_Login) X(C_Logout) X(C_CreateObject)    \
          X(C_CopyObject) X(C_DestroyObject) X(C_GetObjectSize) X(C_GetAttributeValue) X(         \
              C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects) X(C_FindObjectsFinal)    \
              X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) X(C_EncryptFinal) X(C_DecryptInit) \
                  X(C_Decrypt) X(C_DecryptUpdate) X(C_DecryptFinal) X(C_DigestInit) X(C_Digest)   \
                      X(C_DigestUpdate) X(C_DigestKey) X(C_DigestFinal) X(C_SignInit) X(C_Sign)   \
                          X(C_SignUpdate) X(C_SignFinal) X(C_SignRecoverInit) X(C_SignRecover)    \
                              X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate) X(C_VerifyFinal)      \
                                  X(C_VerifyRecoverInit) X(C_VerifyRecover)                       \
                                      X(C_DigestEncryptUpdate) X(C_DecryptDigestUpdate)           \
                                          X(C_SignEncryptUpdate) X(C_DecryptVerifyUpdate)         \
                                              X(C_GenerateKey) X(C_GenerateKeyPair) X(C_WrapKey)  \
                                                  X(C_UnwrapKey) X(C_DeriveKey) X(C_SeedRandom)   \
                                                      X(C_GenerateRandom) X(C_GetFunctionStatus)  \
                                                          X(C_CancelFunction)                     \
                                                              X(C_WaitForSlotEvent)
/* clang-format on */

static int known_function(const char* name) {
#define SHIM_KNOWN(f)        \
  if (strcmp(name, #f) == 0) \
    return 1;
  SHIM_FUNCTIONS(SHIM_KNOWN)
#undef SHIM_KNOWN
  return 0;
}

/* --- loading ---------------------------------------------------------------------------------- */

static void copy_env(const char* var, char* dst, size_t n) {
  const char* v = getenv(var);
  if (v != NULL && strlen(v) < n) {
    memcpy(dst, v, strlen(v) + 1);
  }
}

static void load_target(void) {
  pthread_mutex_lock(&g_mu);
  copy_env("OTD_P11_SHIM_CONTROL", g_state.control, sizeof g_state.control);
  copy_env("OTD_P11_SHIM_STATS", g_state.stats, sizeof g_state.stats);
  const char* seed = getenv("OTD_P11_SHIM_SEED");
  g_state.rng = seed != NULL ? strtoull(seed, NULL, 0)
                             : (unsigned long long)now_ns() ^ ((unsigned long long)getpid() << 32);
  pthread_mutex_unlock(&g_mu);

  const char* target = getenv("OTD_P11_SHIM_TARGET");
  if (target == NULL || target[0] == '\0') {
    target = "/usr/lib/softhsm/libsofthsm2.so";
  }
  char line[4200];
  g_target = dlopen(target, RTLD_NOW | RTLD_LOCAL);
  CK_C_GetFunctionList get = NULL;
  if (g_target != NULL) {
    void* sym = dlsym(g_target, "C_GetFunctionList");
    memcpy(&get, &sym, sizeof get); /* object -> function pointer, as POSIX dlsym allows */
  }
  if (get == NULL || get(&g_real) != CKR_OK || g_real == NULL) {
    const char* err = g_target == NULL ? dlerror()
                      : get == NULL    ? "no C_GetFunctionList"
                                       : "C_GetFunctionList failed";
    snprintf(line, sizeof line, "error load target=%s: %s\n", target,
             err != NULL ? err : "dlopen failed");
    fputs(line, stderr);
    pthread_mutex_lock(&g_mu);
    stat_line_locked(line);
    pthread_mutex_unlock(&g_mu);
    g_load_rv = CKR_GENERAL_ERROR;
    return;
  }
  g_list = *g_real; /* version and any entry we do not know stay the real module's */
#define SHIM_SET(f) g_list.f = shim_##f;
  SHIM_FUNCTIONS(SHIM_SET)
#undef SHIM_SET
  snprintf(line, sizeof line, "load target=%s pid=%ld\n", target, (long)getpid());
  pthread_mutex_lock(&g_mu);
  stat_line_locked(line);
  pthread_mutex_unlock(&g_mu);
  g_load_rv = CKR_OK;
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  pthread_once(&g_load_once, load_target);
  if (g_load_rv != CKR_OK) {
    return g_load_rv;
  }
  if (list == NULL) {
    return CKR_ARGUMENTS_BAD;
  }
  CK_RV fault_rv;
  if (fault_for("C_GetFunctionList", &fault_rv)) {
    return fault_rv;
  }
  *list = &g_list;
  return CKR_OK;
}

/* The only exported symbol. */
SHIM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  return shim_C_GetFunctionList(list);
}

/* Unloading the shim (dlclose by its user) unloads the real module too. */
__attribute__((destructor)) static void shim_unload(void) {
  if (g_target != NULL) {
    dlclose(g_target);
  }
  if (g_state.stats_fd >= 0) {
    close(g_state.stats_fd);
  }
}
