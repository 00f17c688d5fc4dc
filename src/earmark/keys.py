"""The one place that builds Redis key names.

Every key of partition ``p`` carries the hash tag ``{p<p>}`` so that all keys a
script touches land in one Redis Cluster slot. See ``docs/design/keys.md``.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from earmark.limits import SEAT_LOCATION

# The consumer group the write-behind flushers read every partition stream through.
FLUSHER_GROUP = "earmark-flusher"


def partition_of(sku: str, partitions: int) -> int:
    """Stable partition of a SKU: every location of a SKU shares its partition."""
    return zlib.crc32(sku.encode()) % partitions


def idempotency_digest(actor: str, key: str) -> str:
    """Idempotency keys are scoped per actor and stored hashed (any charset, fixed size)."""
    return hashlib.sha256(f"{actor}\x00{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (tests give each run its own prefix)."""

    prefix: str = "em"

    def config(self) -> str:
        """Untagged: read by Python at start-up, never by a script."""
        return f"{self.prefix}:config"

    def api_keys(self) -> str:
        return f"{self.prefix}:api-keys"

    def tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def meta(self, partition: int) -> str:
        """Hash holding the generation marker; every write script checks it exists."""
        return f"{self.tag(partition)}:meta"

    def events(self, partition: int) -> str:
        return f"{self.tag(partition)}:events"

    def idempotency(self, partition: int, digest: str) -> str:
        return f"{self.tag(partition)}:idem:{digest}"

    def reservation(self, partition: int, reservation_id: str) -> str:
        """This partition's part of a reservation (status, expiry, its lines here)."""
        return f"{self.tag(partition)}:rsv:{reservation_id}"

    def expiries(self, partition: int) -> str:
        """Sorted set: reservation id by expiry (ms) of held parts, for the sweeper."""
        return f"{self.tag(partition)}:expiries"

    def pins(self, partition: int) -> str:
        """Sorted set: reservation id by pin deadline (ms), for the sweeper."""
        return f"{self.tag(partition)}:pins"

    def stock(self, partition: int, sku: str, location: str) -> str:
        return f"{self.tag(partition)}:stock:{sku}:{location}"

    def hold_expiries(self, partition: int, sku: str, location: str) -> str:
        """Sorted set: reservation id by expiry (ms) of the holds still counted in reserved."""
        return f"{self.tag(partition)}:holds:{sku}:{location}"

    def hold_qty(self, partition: int, sku: str, location: str) -> str:
        """Hash: reservation id -> units it holds of this (sku, location)."""
        return f"{self.tag(partition)}:holdqty:{sku}:{location}"

    def stock_index(self, partition: int) -> str:
        """Set of ``sku:location`` with a stock record, for status, verify and rebuild."""
        return f"{self.tag(partition)}:skus"

    def line_keys(self, partition: int, sku: str, location: str) -> list[str]:
        """Stock, hold expiries and hold qty of one (sku, location): what ``read_stock``
        and ``restore_stock`` take per line."""
        return [
            self.stock(partition, sku, location),
            self.hold_expiries(partition, sku, location),
            self.hold_qty(partition, sku, location),
        ]

    def locations(self, partition: int, sku: str) -> str:
        """Set of every location with a stock record of ``sku`` (its network view)."""
        return f"{self.tag(partition)}:locations:{sku}"

    def on_hand_log(self, partition: int, sku: str, location: str) -> str:
        """Sorted set: ``version:on_hand`` by version, for the last on_hand changes of one
        (sku, location). A cycle count reads on_hand as it stood at the counter's version."""
        return f"{self.tag(partition)}:onhand:{sku}:{location}"

    def reservation_line_keys(self, partition: int, sku: str, location: str) -> list[str]:
        """The four keys a line of a reservation touches, in the order scripts expect:
        ``line_keys`` and the on_hand log (ship changes on_hand)."""
        return [
            *self.line_keys(partition, sku, location),
            self.on_hand_log(partition, sku, location),
        ]

    def transfer(self, partition: int, transfer_id: str) -> str:
        """A transfer between two locations of a SKU (in the SKU's partition)."""
        return f"{self.tag(partition)}:transfer:{transfer_id}"

    def purchase_order(self, partition: int, po_id: str) -> str:
        """This partition's part of a purchase order: its lines here, their receipts."""
        return f"{self.tag(partition)}:po:{po_id}"

    # -- drops (docs/drops.md): every key of a drop is in its SKUs' partition ---------------

    def drop_index(self, partition: int) -> str:
        """Hash: sku -> drop id of every drop SKU of the partition (reserve reads it)."""
        return f"{self.tag(partition)}:drops"

    def drop(self, partition: int, drop_id: str) -> str:
        """Hash: a drop's rules (times in ms, limit, TTLs, SKUs)."""
        return f"{self.tag(partition)}:drop:{drop_id}"

    def drop_customer(self, partition: int, drop_id: str, customer: str) -> str:
        """Hash: reservation id -> units of one customer's holds of a drop."""
        return f"{self.tag(partition)}:drop:{drop_id}:customer:{customer}"

    def drop_at_limit(self, partition: int, drop_id: str) -> str:
        """Set: customers whose last hold (reserved, or a waitlist offer) brought them to
        the drop's limit (candidates of ``Drop.customers_at_limit``, re-checked against
        their entries when read)."""
        return f"{self.tag(partition)}:drop:{drop_id}:atlimit"

    def drop_rate(self, partition: int, drop_id: str, customer: str) -> str:
        """String: '<second>:<attempts>' of one customer's reserve attempts on a drop."""
        return f"{self.tag(partition)}:drop:{drop_id}:rate:{customer}"

    def drop_waitlist(self, partition: int, drop_id: str) -> str:
        """Hash: '<sku>|<customer>' -> waitlist entry (json), '#seq' -> last arrival."""
        return f"{self.tag(partition)}:drop:{drop_id}:waitlist"

    def drop_queue(self, partition: int, drop_id: str, sku: str) -> str:
        """Sorted set: customer -> arrival number, the entries waiting for one SKU."""
        return f"{self.tag(partition)}:drop:{drop_id}:queue:{sku}"

    # -- channels (docs/channels.md) ----------------------------------------------------

    def channel(self, partition: int, channel: str) -> str:
        """Hash: a channel's buffer rules as this partition's reserves read them ('*' the
        default, copied to every partition; 'sku:<sku>' overrides of this partition)."""
        return f"{self.tag(partition)}:channel:{channel}"

    # -- seats (docs/seats.md): every key of a tenant lives in the tenant's partition.

    def seat_pool(self, partition: int, tenant: str) -> str:
        """The tenant's seat pool: a stock hash (on_hand = limit, reserved = pending
        invites, committed = assigned seats) that the ledger, verify and rebuild see."""
        return self.stock(partition, tenant, SEAT_LOCATION)

    def seat_config(self, partition: int, tenant: str) -> str:
        """Hash: cap, overage, limit, floating, lease_ms, over_cap of a tenant."""
        return f"{self.tag(partition)}:seatcfg:{tenant}"

    def seat_users(self, partition: int, tenant: str) -> str:
        """Sorted set: assigned user -> assigned at (ms)."""
        return f"{self.tag(partition)}:seatusers:{tenant}"

    def seat_invites(self, partition: int, tenant: str) -> str:
        """Sorted set: invited user -> invite expiry (ms), every invite counted in reserved."""
        return f"{self.tag(partition)}:seatinvites:{tenant}"

    def seat_leases(self, partition: int, tenant: str) -> str:
        """Sorted set: user -> lease expiry (ms) of floating assignments."""
        return f"{self.tag(partition)}:seatleases:{tenant}"

    def seat_high_water(self, partition: int, tenant: str) -> str:
        """Hash: billing period (YYYY-MM, UTC, Redis time) -> most seats assigned at once."""
        return f"{self.tag(partition)}:seathwm:{tenant}"

    def seat_layout(self, partition: int, tenant: str) -> list[str]:
        """The keys of lua/includes/seats.lua after the write prefix, in order."""
        return [
            self.seat_pool(partition, tenant),
            self.stock_index(partition),
            self.seat_config(partition, tenant),
            self.seat_users(partition, tenant),
            self.seat_invites(partition, tenant),
            self.seat_leases(partition, tenant),
            self.seat_high_water(partition, tenant),
            self.on_hand_log(partition, tenant, SEAT_LOCATION),
        ]
