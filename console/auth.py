"""Operators: password hashing, session and CSRF tokens, roles. Pure: no I/O,
no clock (times are passed in).

Passwords are hashed with scrypt (RFC 7914) and a 16-byte random salt; the
stored form is self-describing so the cost can be raised later without
invalidating old hashes:  ``scrypt$n$r$p$salt_hex$hash_hex``.
Session tokens are random 32-byte strings given to the browser in an HttpOnly
cookie; the database keeps only their SHA-256, so a leaked database does not
let anyone ride a live session."""

import hashlib
import hmac
import secrets

# scrypt cost: n=2**14, r=8 takes about 16 MiB and 30-60 ms here: slow enough
# to make guessing expensive, fast enough for a login.
SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# A password shorter than this is refused when set or changed.
MIN_PASSWORD_CHARS = 10
# Longest accepted password: scrypt input is unbounded, a request body is not.
MAX_PASSWORD_CHARS = 256

ROLES = ("operator", "supervisor", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}

# Permission -> lowest role that has it (roles are ordered: admin can do all).
PERMISSIONS = {
    "board.view": "operator",
    "incident.act": "operator",      # acknowledge, dispatch, close, video call
    "history.view": "operator",
    "history.export": "supervisor",  # CSV export
    "escalations.view": "supervisor",  # alerted to every escalated alarm, on every tab
    "report.view": "supervisor",     # daily report, availability
    "box.command": "supervisor",     # ask a box for a self-test
    "operators.manage": "admin",
}


class PasswordPolicyError(ValueError):
    pass


def check_password_policy(password, username=""):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise PasswordPolicyError("password must have at least %d characters" % MIN_PASSWORD_CHARS)
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordPolicyError("password must have at most %d characters" % MAX_PASSWORD_CHARS)
    if username and password.lower() == username.lower():
        raise PasswordPolicyError("password must not be the user name")


def hash_password(password, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=None):
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024,
                            dklen=_HASH_BYTES)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, salt.hex(), digest.hex())


def verify_password(password, stored):
    """True if password matches the stored hash; False for any malformed hash
    (never raises on bad input: a login must not 500)."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(hash_hex)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r),
                                p=int(p), maxmem=256 * 1024 * 1024, dklen=len(expected))
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(digest, expected)


# A hash of a random password, verified against when the user does not exist,
# so that "no such user" takes as long as "wrong password".
_DUMMY_HASH = None


def dummy_hash():
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def new_token():
    return secrets.token_urlsafe(32)


def token_hash(token):
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def one_time_password():
    # 16 url-safe characters, about 96 bits: typed once, then changed.
    return secrets.token_urlsafe(12)


def role_rank(role):
    return _RANK.get(role, -1)


def can(role, permission):
    need = PERMISSIONS[permission]
    return role_rank(role) >= _RANK[need]


def tokens_equal(a, b):
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def locked_out(failure_times, now, max_failures, window_s):
    """True when there were max_failures or more failed logins within window_s
    before now: the account waits until the oldest of them leaves the window."""
    recent = [t for t in failure_times if now - t < window_s]
    return len(recent) >= max_failures
