"""The Redis store's key scheme: prefixes, hex ids, hash tags, and which keys a script gets.

Every key of one profile is ``P:{H}:<name>``, where ``P`` is the store's prefix and ``H``
the hex of the profile id's UTF-8 (lone surrogates kept): hex is injective and has no
braces, so any id keeps its keys apart from every other id's and in one Cluster slot.
A profile's script is given its ``meta`` key and names the others from it, by their
position in :data:`ORDER` (common.lua names the positions).
"""

from __future__ import annotations

import hashlib

__all__ = ["ORDER", "KeyScheme", "ProfileKeys", "bucket_hash", "bucket_of", "hex_id", "unhex"]

ORDER = (
    "meta",
    "map",
    "pool",
    "ver",
    "due",
    "ids",
    "rev",
    "claims",
    "choice",
    "batch",
    "cap",
    "optout",
    "health",
)
"""The keys of a profile in the order the scripts' KEYS list them. ``map`` and ``rev``
name no key of their own (layout 3): ``map:<b>`` is bucket ``b`` of the mapping table,
``rev:<sid>`` the reverse index of sender id ``sid`` (docs/redis.md)."""

OLD = ("queue", "late")
"""Layout 2's expiry index, which the migration to layout 3 deletes (its ``map`` and
``rev`` were keys of their own)."""


def bucket_hash(to: str) -> int:
    """A recipient's 32-bit hash, as the scripts compute it (``hash_of``). O(len).

    An E.164 number (``+`` and at most 15 ASCII digits) is its digits mod 2^32; any
    other text the first 32 bits of the SHA-1 of its UTF-8.
    """
    digits = to[1:]
    if to[:1] == "+" and 0 < len(digits) <= 15 and digits.isascii() and digits.isdigit():
        return int(digits) % (1 << 32)
    digest = hashlib.sha1(to.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16)


def bucket_of(h: int, nb: int) -> int:
    """The bucket of hash ``h`` among ``nb`` by linear hashing (``bucket_of`` in Lua). O(1)."""
    low = 1 << (nb.bit_length() - 1)
    b = h % (2 * low)
    return h % low if b >= nb else b


def hex_id(value: str) -> str:
    """An id as key-safe text: hex of its UTF-8 (lone surrogates kept), injective."""
    return value.encode("utf-8", "surrogatepass").hex()


def unhex(value: str) -> str:
    """The id :func:`hex_id` encoded."""
    return bytes.fromhex(value).decode("utf-8", "surrogatepass")


class ProfileKeys:
    """The keys of one profile, all under one ``{hash tag}``: the hex of its id."""

    __slots__ = (
        "batch",
        "cap",
        "choice",
        "claims",
        "due",
        "every",
        "fence",
        "health",
        "hex",
        "ids",
        "late",
        "map",
        "meta",
        "optout",
        "pool",
        "queue",
        "rev",
        "script",
        "ver",
    )

    def __init__(self, prefix: str, hex_value: str) -> None:
        base = f"{prefix}:{{{hex_value}}}:"
        self.hex = hex_value
        self.meta, self.map, self.pool, self.ver = (base + n for n in ORDER[:4])
        self.due, self.ids, self.rev, self.claims = (base + n for n in ORDER[4:8])
        self.choice, self.batch, self.cap = (base + n for n in ORDER[8:11])
        self.optout, self.health = (base + n for n in ORDER[11:])
        self.every = (
            self.meta,
            self.map,
            self.pool,
            self.ver,
            self.due,
            self.ids,
            self.rev,
            self.claims,
            self.choice,
            self.batch,
            self.cap,
            self.optout,
            self.health,
        )
        """Every key: the selects, the number-membership protocol, delete_profile.

        ``cap`` (a hash: number -> capacity state), ``optout`` (a set of opted-out
        recipients) and ``health`` (a hash: number -> delivery window) come last, so the
        shorter prefixes below stay as they were."""
        self.queue, self.late = (base + n for n in OLD)
        self.fence = base + "fence"
        """A key never written. Declared with ``meta``, it makes Redis Cluster refuse a
        script before it runs (TRYAGAIN: one declared key present, one missing) while
        the profile's slot migrates, rather than fail it midway at a key moved already
        (a script reaches keys it was not given, and those Redis cannot check first)."""
        self.script = (self.meta, self.fence)
        """The KEYS a profile's script is given: ``meta`` and the fence. The script
        names the others from ``meta`` (common.lua's ``profile_keys``, in
        :data:`ORDER`, then :data:`OLD`), all in its slot."""

    def bucket(self, b: int) -> str:
        """The key of bucket ``b`` of the mapping table."""
        return f"{self.map}:{b}"

    def rev_of(self, sid: str) -> str:
        """The key of sender id ``sid``'s reverse index (a bitmap of buckets)."""
        return f"{self.rev}:{sid}"


_CACHED = 10_000
"""Profiles whose key names a scheme keeps built."""


class KeyScheme:
    """The keys of one store (one prefix): profiles', owners' and the global ones."""

    __slots__ = ("_cache", "evicted", "moved", "prefix", "profiles")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.profiles = f"{prefix}:profiles"
        """A set of the hex id of every profile."""
        self.evicted = f"{prefix}:evicted"
        """Dead mappings evicted in profiles deleted since."""
        self.moved = f"{prefix}:moved:{{{self.evicted}}}"
        """Per deleted id, the last incarnation whose evicted count ``evicted`` holds: a
        hash in ``evicted``'s slot (its hash tag is that key's name), so that one script
        adds each count once."""
        self._cache: dict[str, ProfileKeys] = {}

    def of(self, profile_id: str) -> ProfileKeys:
        """The keys of a profile. O(1), cached."""
        keys = self._cache.get(profile_id)
        if keys is None:
            if len(self._cache) >= _CACHED:  # ids come from callers: keep it bounded
                self._cache.clear()
            keys = self._cache[profile_id] = ProfileKeys(self.prefix, hex_id(profile_id))
        return keys

    def of_hex(self, hex_value: str) -> ProfileKeys:
        """The keys of the profile whose hex id this is."""
        return ProfileKeys(self.prefix, hex_value)

    def owner(self, number: str) -> str:
        """A number's owner key. Its own slot (no hash tag): a number is in one pool at most."""
        return f"{self.prefix}:own:{hex_id(number)}"

    def glob(self) -> str:
        """The prefix escaped for a SCAN pattern."""
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
