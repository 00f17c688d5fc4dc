"""Every engine operation, free of I/O, one mixin per resource (see ``earmark.engine.
operation`` for how a generator method becomes a method of both engines)."""

from earmark.engine.ops.alerts import AlertOps
from earmark.engine.ops.channels import ChannelOps
from earmark.engine.ops.counts import CountOps
from earmark.engine.ops.drop_figures import DropFigureOps
from earmark.engine.ops.drops import DropListing, DropOps
from earmark.engine.ops.keys import KeyOps
from earmark.engine.ops.listing import ListingOps
from earmark.engine.ops.losses import LossOps
from earmark.engine.ops.notes import NoteOps
from earmark.engine.ops.purchase_orders import PurchaseOrderOps
from earmark.engine.ops.reservations import ReservationOps
from earmark.engine.ops.returns import ReturnOps
from earmark.engine.ops.seats import SeatOps
from earmark.engine.ops.status import StatusOps
from earmark.engine.ops.stock import StockOps
from earmark.engine.ops.sweep import SweepOps
from earmark.engine.ops.transfers import TransferOps
from earmark.engine.ops.waitlist import WaitlistOps


class Operations(
    ChannelOps,
    StockOps,
    ReservationOps,
    SweepOps,
    TransferOps,
    ReturnOps,
    LossOps,
    CountOps,
    PurchaseOrderOps,
    StatusOps,
    KeyOps,
    WaitlistOps,
    DropOps,
    DropListing,
    DropFigureOps,
    ListingOps,
    SeatOps,
    AlertOps,
    NoteOps,
):
    """The whole surface of an engine, composed as redis-py composes ``CoreCommands``."""


__all__ = ["Operations"]
