"""Makes spec/vectors/backup.json (PROTOCOL.md §9) with Python's `cryptography`, from the
spec's text alone: an implementation independent of the Rust one that must reproduce it.

Inputs that need keccak (the wallet address, its EIP-191 signature of the unlock text)
are given: alice of identity.json, and her RFC 6979 signature, which this script turns
into its high-s twin with v in 0/1 form, so a reader must normalize (§9.3).

    python3 spec/vectors/make/backup.py > spec/vectors/backup.json
"""

import hashlib
import hmac
import json
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

WALLET = "0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce"
# alice's signature of the unlock text below (low s, v = 28).
SIGNATURE = (
    "0x15acdf3d4ff10c85b8ac486b03ae95bd811753bb0e7b6abfab260fd70cb5a2f7"
    "4c3a8b33f884b98d607d60033376b1e6cf02f79c6f3b4672f2df3e858127f061"
    "1c"
)
WALLET_SALT = bytes([0x11] * 16)
CODE_SALT = bytes([0x22] * 16)
BACKUP_KEY = bytes([0x33] * 32)
CODE_SECRET = bytes(range(0x40, 0x50))
WRAP_NONCES = [bytes([0x55] * 12), bytes([0x66] * 12)]
NONCE = bytes([0x77] * 12)
VERSION = 3


def unlock_text(wallet, salt):
    return (
        "denet: unlock my message backup\n"
        f"wallet: {wallet}\n"
        f"backup: {salt.hex()}\n"
        "\n"
        "This signature is the key to the backup of your denet chats. Sign it only in a denet app you trust."
    )


def high_s_twin(signature):
    raw = bytes.fromhex(signature[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    return "0x" + (r + (N - s).to_bytes(32, "big") + bytes([(v - 27) ^ 1])).hex()


def signature_ikm(signature):
    raw = bytes.fromhex(signature[2:])
    r, s = raw[:32], int.from_bytes(raw[32:64], "big")
    if s > N // 2:
        s = N - s
    return r + s.to_bytes(32, "big")


def wallet_kek(signature, wallet, salt):
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=f"denet/v1/backup-wallet\n{wallet}".encode())
    return hkdf.derive(signature_ikm(signature))


def code_kek(secret, salt):
    return Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456).derive(secret)


def recovery_code(secret):
    data = secret + hashlib.sha256(b"denet/v1/recovery-code\n" + secret).digest()[:4]
    bits = int.from_bytes(data, "big")
    chars = "".join(CROCKFORD[(bits >> (5 * (31 - i))) & 31] for i in range(32))
    return "-".join(chars[i : i + 4] for i in range(0, 32, 4))


def check(kek):
    return hmac.new(kek, b"denet/v1/backup-check", hashlib.sha256).digest()[:16]


def wrap(method, kek, salt, nonce):
    aad = f"denet/v1/backup-key\n{WALLET}\n{method}".encode()
    return bytes([method]) + salt + check(kek) + nonce + AESGCM(kek).encrypt(nonce, BACKUP_KEY, aad)


def pad(content):
    need = max(64, len(content) + 4)
    size = 1 << (need - 1).bit_length() if need <= 4096 else -(-need // 4096) * 4096
    return (struct.pack(">I", len(content)) + content).ljust(size, b"\0")


def main():
    signature = high_s_twin(SIGNATURE)
    kek_wallet = wallet_kek(signature, WALLET, WALLET_SALT)
    assert kek_wallet == wallet_kek(SIGNATURE, WALLET, WALLET_SALT), "both forms are one key"
    kek_code = code_kek(CODE_SECRET, CODE_SALT)
    wraps = wrap(1, kek_wallet, WALLET_SALT, WRAP_NONCES[0]) + wrap(2, kek_code, CODE_SALT, WRAP_NONCES[1])
    room = "7ad2f5fde6e72c71829d286dd46d964249b666ef3fe1a72447273109d75e974a"
    contents = {
        "wallet": WALLET,
        "recovery": {
            "sign_key": "hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU",
            "dh_key": "_EaUFbHFDszJbaar_fyl5QzO7zwVnS9PJnDDNt7LSGE",
            "dh_secret": "J1G0D___iend9hqnsggnJtcMJVDj0lhCd2LQkVB_0vg",
            "expires_at": 1795636000000,
        },
        "knows": ["hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU"],
        "state": {
            "version": 1,
            "cursors": {WALLET: 12, room: 4},
            "rooms": {
                room: {
                    "name": "plans",
                    "stretched": None,
                    "epoch": 1,
                    "keys": {
                        "0": {"key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "message_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
                        "1": {"key": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8", "message_key": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"},
                    },
                    "openers": {},
                    "members": [WALLET, "0x71219e12048dceab2d53475f1bf12accbce805db"],
                    "since": {"0x71219e12048dceab2d53475f1bf12accbce805db": 1, WALLET: 0},
                    "left": False,
                }
            },
            "invites": {},
            "held_rekeys": {},
            "dh_secrets": ["J1G0D___iend9hqnsggnJtcMJVDj0lhCd2LQkVB_0vg"],
        },
    }
    # Maps in key order, fields in the order §9.3 lists them (serde writes them so).
    plain = json.dumps(contents, separators=(",", ":")).encode()
    aad = f"denet/v1/backup\n{WALLET}\n{VERSION}\n{hashlib.sha256(wraps).hexdigest()}".encode()
    sealed = AESGCM(BACKUP_KEY).encrypt(NONCE, pad(plain), aad)
    blob = b"DNB1" + struct.pack(">Q", VERSION) + bytes([2]) + wraps + NONCE + sealed
    vector = {
        "description": "An encrypted key backup (PROTOCOL.md 9.3), made with Python's cryptography from the spec's text: both unlock methods, the keys they derive and the blob. `signature` is the high-s, v = 0/1 twin of alice's signature of `unlock_text`: a reader normalizes it. Random inputs are fixed: the wraps are drawn in order (wallet, then code), each a salt and a nonce, then the contents' nonce.",
        "wallet": WALLET,
        "unlock_text": unlock_text(WALLET, WALLET_SALT),
        "signature": signature,
        "low_s_signature": SIGNATURE,
        "recovery_code": recovery_code(CODE_SECRET),
        "code_secret": CODE_SECRET.hex(),
        "backup_key": BACKUP_KEY.hex(),
        "wraps": [
            {"method": 1, "salt": WALLET_SALT.hex(), "nonce": WRAP_NONCES[0].hex(), "kek": kek_wallet.hex(), "check": check(kek_wallet).hex()},
            {"method": 2, "salt": CODE_SALT.hex(), "nonce": WRAP_NONCES[1].hex(), "kek": kek_code.hex(), "check": check(kek_code).hex()},
        ],
        "version": VERSION,
        "nonce": NONCE.hex(),
        "contents": plain.decode(),
        "blob": blob.hex(),
    }
    print(json.dumps(vector, indent=2))


if __name__ == "__main__":
    main()
