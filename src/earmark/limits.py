"""Every bound the engine enforces, with its unit in its name.

Requests outside these bounds are refused with ``InvalidRequest`` before any
Redis call is made, so a bad request writes nothing.
"""

from __future__ import annotations

import re

SKU_LENGTH_MAX = 64
LOCATION_LENGTH_MAX = 64
# Letters, digits and ``. _ -``: keys stay readable and ``:`` stays a safe separator.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_LOCATION = "default"

QTY_MAX = 1_000_000
ADJUST_DELTA_MAX = 1_000_000
LINES_MAX = 50
SKUS_PER_READ_MAX = 1_000
# The furthest ahead ``holds_expiring`` looks (a day, the longest hold).
HOLDS_EXPIRING_WINDOW_SECONDS_MAX = 86_400

TTL_MS_MIN = 1_000
TTL_MS_MAX = 24 * 60 * 60 * 1_000
TTL_MS_DEFAULT = 15 * 60 * 1_000

IDEMPOTENCY_KEY_LENGTH_MAX = 255
IDEMPOTENCY_RETENTION_MS_DEFAULT = 24 * 60 * 60 * 1_000
IDEMPOTENCY_RETENTION_MS_MIN = 24 * 60 * 60 * 1_000

CHANNEL_LENGTH_MAX = 64
# Channels (docs/channels.md): a buffer rule's units and floor, and its percent.
CHANNEL_BUFFER_UNITS_MAX = 1_000_000_000
CHANNEL_BUFFER_PERCENT_MAX = 100
# Rules (the default and SKU overrides) one channel keeps per partition; also bounds
# what GET /v1/channels/{channel} reads. Checked in lua/includes/channels.lua too.
CHANNEL_RULES_PER_PARTITION_MAX = 10_000
ACTOR_LENGTH_MAX = 128
REASON_LENGTH_MAX = 256
REFERENCE_LENGTH_MAX = 128

# How long a finished (released, expired, shipped) reservation stays readable in Redis.
RESERVATION_RETENTION_MS_DEFAULT = 7 * 24 * 60 * 60 * 1_000
# How long a received transfer or a closed / cancelled purchase order stays readable in Redis.
FINISHED_RECORD_RETENTION_MS = 30 * 24 * 60 * 60 * 1_000

# Stock lifecycle (docs/design/lifecycle.md).
SUPPLIER_LENGTH_MAX = 128
# A received transfer may report 0 (all lost) up to this many units (surplus included).
QTY_RECEIVED_MAX = QTY_MAX
# A cycle count's counted quantity; a location may hold more than one line's QTY_MAX.
COUNTED_MAX = 1_000_000_000
# Stock versions a count may name (Lua numbers are doubles: stay well inside 2**53).
VERSION_MAX = 2**50
# on_hand changes remembered per (sku, location) for cycle counts (the Lua constant
# ONHAND_LOG_MAX in lua/includes/common.lua; a test checks they agree). A count whose
# version is older than the oldest remembered change is refused as stale.
ONHAND_LOG_MAX = 256
DISPOSITIONS = ("restock", "damaged", "write_off")
WRITE_OFF_SOURCES = ("on_hand", "damaged")

# Expired holds that one reserve call reclaims per line before it checks stock.
RECLAIM_PER_LINE_MAX = 64
# Calls one operation makes while a script answers reclaim_more (a short line still counts
# more expired holds than one call may give back): each call gives back up to
# reclaim_per_line_max more, so 16 x 64 = 1,024 per line; past that the operation raises
# ReclaimBacklog (503, retry) rather than a refusal that might be false.
RECLAIM_ROUNDS_MAX = 16
# The most EngineConfig.reclaim_per_line_max may be set to (the Lua scripts check it too).
RECLAIM_PER_LINE_LIMIT = 1_000
# Expired holds a stock read looks at per line to leave them out of `reserved`.
EXPIRED_READ_PER_LINE_MAX = 10_000
# Expired holds or stale pins that one sweeper pass handles per partition.
SWEEP_BATCH_MAX = 500
# How long a multi-partition commit may keep its holds pinned before the sweeper resolves them.
PIN_MS = 30_000

PARTITIONS_MAX = 1_024

# Redis connections per engine (per cluster node); callers beyond it wait, at most this long.
CONNECTIONS_MAX = 100
CONNECTION_WAIT_S = 10.0
# Script calls the asyncio engine coalesces into one pipeline, at most.
COALESCED_CALLS_MAX = 256
# Concurrent reserves of one partition the asyncio engine sends as ONE script call
# (lua/reserve_batch.lua), at most, and the most bytes of KEYS and ARGV one such call
# carries: a batch past either bound is split. 64 carts keep one call's time in Redis
# near a few milliseconds; 256 KiB keeps it far below Redis's query buffer limits.
CARTS_PER_CALL_MAX = 64
BATCH_BYTES_MAX = 256 * 1024

# Replicated writes (EngineConfig.min_replicas_ack): replicas a write may wait for, and
# how long one WAIT waits for them.
REPLICAS_ACK_MAX = 16
REPLICA_ACK_TIMEOUT_MS_DEFAULT = 200
REPLICA_ACK_TIMEOUT_MS_MAX = 10_000
# Events waiting for the durable record past which new demand is refused; what serve
# uses by default (about 210 MB of Redis memory at ~210 bytes an event), and the most.
DURABILITY_BACKLOG_MAX_DEFAULT = 1_000_000
DURABILITY_BACKLOG_MAX_LIMIT = 100_000_000

# Drops (docs/drops.md). Lua checks the first three as well (lua/includes/common.lua).
DROP_SKUS_MAX = 50
DROP_CUSTOMER_LIMIT_MAX = 100
# Customers at the head of a SKU's queue one freeing script offers units to or passes
# over (lua/includes/offers.lua); the sweeper's offer pass serves the rest.
OFFERS_PER_CALL_MAX = 8
# Calls one release, commit or expiry may take to bring a drop's offer keys (the queue's
# head may move between the read and the call).
OFFER_KEY_ROUNDS_MAX = 8
DROP_ID_LENGTH_MAX = 64
CUSTOMER_LENGTH_MAX = 128
# Reserve calls one cart may take to bring a drop's keys (the drop, then the customer's
# pending entries; once more if they changed in between).
DROP_KEY_ROUNDS_MAX = 4
# (partition, sku) -> drop hints an engine keeps to save the first round trip.
DROP_HINTS_MAX = 10_000
# Reservation id -> its part's lines an engine remembers (from its own reserves and
# reads), so commit, release, extend and ship of a one-partition reservation take one
# round trip; the oldest are forgotten past it (a miss reads the part first).
KNOWN_PARTS_MAX = 100_000
# Reserve attempts per customer per drop per second, by default (0: no limit).
DROP_ATTEMPTS_PER_SECOND_DEFAULT = 5
DROP_ATTEMPTS_PER_SECOND_MAX = 1_000

# Seat allocation (docs/seats.md): a tenant's seat pool is a stock record at a location
# no SKU can have (SEAT_LOCATION is outside NAME_PATTERN), so the two never collide.
TENANT_LENGTH_MAX = 64
SEAT_LOCATION = "~seats"
SEAT_CAP_MAX = 1_000_000
SEAT_USER_LENGTH_MAX = 128
# Letters, digits and ``. _ - @ +`` (e-mail addresses fit), starting with a letter or digit.
SEAT_USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
# Overage name -> (numerator, denominator): the limit is floor(cap x factor), exactly.
SEAT_OVERAGES = {"none": (1, 1), "1.25x": (5, 4), "1.5x": (3, 2), "2x": (2, 1)}
INVITE_TTL_MS_MIN = 1_000
INVITE_TTL_MS_MAX = 30 * 24 * 60 * 60 * 1_000
SEAT_LEASE_MS_MIN = 1_000
SEAT_LEASE_MS_MAX = 24 * 60 * 60 * 1_000
# Expired invites and floating leases one seat write gives back before it decides.
SEAT_RECLAIM_MAX = 64
# Assigned users per page of ``seat_users``.
SEAT_USERS_PAGE_MAX = 1_000
SEAT_USERS_PAGE_DEFAULT = 100

# --- reconciliation and low-stock alerts (issue 15) ---
# A reorder point or re-arm level (units).
REORDER_UNITS_MAX = 1_000_000_000
# Lead time of a reorder setting (whole days).
LEAD_TIME_DAYS_MAX = 3_650
# Count lines one POST /v1/reconciliations may carry; larger files: `earmark reconcile`.
RECONCILIATION_LINES_MAX = 10_000
# Lines the CLI reads and compares per chunk (bounded memory for any file size).
RECONCILIATION_CHUNK_LINES = 2_000
# A count line's quantity (units): as a cycle count's.
RECONCILIATION_QTY_MAX = 1_000_000_000
# A reconciliation's source name and a case's assignee, root cause, reason (characters).
SOURCE_LENGTH_MAX = 64
ASSIGNEE_LENGTH_MAX = 128
CASE_TEXT_LENGTH_MAX = 500
# Discrepancy cases one periodic overdue check announces at most.
OVERDUE_PER_CHECK_MAX = 500
# Stock records GET /v1/alerts reads per pipeline.
ALERTS_PER_READ_MAX = 500
# Cases and uncounted SKUs one reconciliation report lists (the rest: GET /v1/discrepancies).
REPORT_LISTED_MAX = 1_000
# Discrepancy cases per page of GET /v1/discrepancies.
CASES_PAGE_MAX = 500

# Drops per page of GET /v1/drops (the console's Drops page).
DROP_PAGE_LIMIT_MAX = 100
# Customers a drop's `customers_at_limit` figure re-checks per read, at most (each holds
# the limit's units, so they are at most the drop's units / limit); beyond, the figure is
# unknown (None) rather than a partial count. And how many are read per pipeline.
DROP_AT_LIMIT_CHECKED_MAX = 10_000
DROP_AT_LIMIT_PER_READ_MAX = 500
# Held reservations per page of GET /v1/reservations (`earmark reservations list`), and
# the statuses it lists: only held ones are indexed in Redis.
RESERVATION_PAGE_MAX = 100
LISTED_RESERVATION_STATUSES = ("held",)
# Drops /metrics exports per scrape (drops are few; the rest are left out, by id order).
DROPS_SCRAPED_MAX = 100
