"""What a network's layer reads of its input: the frames, rows and columns under its grid's cells.

A CNN layer's ``(T', H', W')`` grid usually spans the whole clip, and its maps are stretched over
it. An unpadded strided layer does not: a ``Conv3d`` of kernel ``(2, 4, 4)``, stride 2 on 5 frames
of 17 pixels reads frames 0–3 and rows and columns 0–15, never frame 4 or row and column 16.
Stretched over the clip, its 2 feature frames were laid on all 5 frames, and Grad-CAM gave the
frame the layer never reads the largest score.

:class:`FootprintTracker` finds out what each cell reads by watching the explanation's own forward
pass (a :class:`~torch.utils._python_dispatch.TorchDispatchMode`: every ATen operation up to the
layer, with its actual arguments), so it costs no pass of its own and no gradient. Each tensor
computed from the pixels carries, for each of the clip's axes T, H and W, which input indices each
of its positions reads: a boolean matrix ``(size of the tensor's dimension, size of the input
axis)``, or one vector for all positions once a reduction has mixed the axis away. The rules are
exact for the operations a CNN is made of: convolutions and pools (kernel, stride, padding,
dilation, as run), element-wise operations with broadcasting (activations, additions of residual
branches, inference-mode batch norm), views, permutations, slices, concatenations, constant
padding and reductions. Branches that join (a residual ``out + x``, a ``torch.cat``) take the union
of what each reads, so a cell reads an input index if any path from it to the cell does (holes
inside a window, such as a max-pool's losers, count as read: the structure reads them).

Each position also carries where it is *centred* on the input axis: the position, in input
indices, that its window is symmetric about — ``o·stride − padding + (kernel − 1)·dilation / 2`` of
the position below it, composed down to the pixels, whether or not the window reaches past the
input's edge. A padded strided layer is centred on ``o·stride``, not on the middle of the cells it
stands for: the bundled 3D CNN's 8 × 8 grid sits on pixels 0, 8, …, 56 of its 64-pixel input, and
stretching it over the clip (``align_corners=False``, which puts cell ``o`` at ``8·o + 3.5``) shifted
every CAM map 3.5 pixels down and to the right of what the layer saw. :meth:`Footprint.maps_on_input`
lays the grid's values on those centres and interpolates between them.

Anything else on the way — an upsampling, a matrix product, an indexing by values, a view that
folds the frames into the batch (a per-frame 2D CNN), a write into a view of a tracked tensor — and
the footprint is unknown: :meth:`FootprintTracker.footprint` returns ``None`` and the maps are
stretched over the clip as before. Values taken out of torch (``.numpy()``) are not followed.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass
from typing import Any, Hashable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from .align import align_time, interpolation_weights

aten = torch.ops.aten

# A note on a tensor: {axis: (dim, reads, centres)}. ``dim`` is the tensor's dimension that indexes
# the axis, ``reads`` a bool (size of dim, n) matrix: position i of dim reads input indices reads[i],
# and ``centres`` a float64 (size of dim,) vector: the input index position i is centred on (None
# where that is not known); or ``dim`` is None, ``reads`` a bool (n,) vector that every position
# reads and ``centres`` None. An axis missing from the note is not read at all. A tensor that is not
# computed from the pixels has no note; a tensor computed in a way the rules do not know has the
# note None (unknown), which spreads.
Entry = tuple[int | None, torch.Tensor, torch.Tensor | None]
Note = dict[str, Entry]


@dataclass(frozen=True, eq=False)
class Footprint:
    """What a layer's ``(T', H', W')`` grid reads of a ``T × H × W`` input.

    Attributes:
        frames: bool ``(T', T)``: feature frame k reads input frame t where ``frames[k, t]``.
        rows: bool ``(H', H)``; cols: bool ``(W', W)``: the same for rows and columns.
        frame_centres: float ``(T',)``: the input frame (fractional) each feature frame is centred
            on; ``row_centres`` ``(H',)`` and ``col_centres`` ``(W',)`` the same for rows and
            columns. ``None`` where not known: the grid is then stretched over the input.
    """

    frames: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    frame_centres: torch.Tensor | None = None
    row_centres: torch.Tensor | None = None
    col_centres: torch.Tensor | None = None

    @property
    def reads_every_frame(self) -> bool:
        return bool(self.frames.any(0).all())

    @property
    def reads_every_pixel(self) -> bool:
        return bool(self.rows.any(0).all() and self.cols.any(0).all())

    @property
    def reads_everything(self) -> bool:
        return self.reads_every_frame and self.reads_every_pixel

    @property
    def stretched(self) -> bool:
        """Whether laying the grid on its input is what stretching it over the input does: every
        frame, row and column read, and each cell centred where the stretch puts it (cell ``o`` of
        ``n'`` over ``n`` at ``(o + ½)·n/n' − ½``, where centres are known)."""
        return self.reads_everything and all(
            c is None or torch.allclose(c, _stretch_centres(len(c), n).to(c.dtype), atol=1e-6)
            for c, n in ((self.frame_centres, self.frames.shape[1]), (self.row_centres, self.rows.shape[1]),
                         (self.col_centres, self.cols.shape[1])))

    def spread(self) -> torch.Tensor:
        """``(T, T')`` float: each feature frame's share on each input frame. Where every frame is
        read and the feature frames' centres are known, the linear interpolation between those
        centres (the frame a feature frame is centred on gets all of it); else its mass spread
        evenly over the frames it reads (a feature frame of a kernel-2 layer gives half to each of
        its 2), zero on frames never read, or, where the centres are not known, the ``"linear"``
        alignment of a CNN's feature frames (:func:`~videoxai.core.align.align_time`)."""
        t_in, t = self.frames.shape
        if self.reads_every_frame:
            weights = interpolation_weights(self.frame_centres, t)
            if weights is not None:
                return weights
            return align_time(torch.eye(t_in)[None, :, :, None], t, "linear")[0, :, :, 0]
        counts = self.frames.sum(1, keepdim=True).clamp_min(1)
        return (self.frames.float() / counts).T

    def frames_on_input(self, values: torch.Tensor) -> torch.Tensor:
        """Per feature frame ``(B, T')`` → per input frame ``(B, T)`` (:meth:`spread`)."""
        return values.float() @ self.spread().to(values.device).T

    def maps_on_input(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on the grid ``(B, T', H', W')`` → ``(B, T, H, W)`` laid on what the grid reads.

        Time: :meth:`spread`. Space: where the cells' centres are known, linear interpolation
        between them (held constant beyond the first and last), zero on rows and columns never
        read; else bilinear over the span of rows and columns read (holes inside it taken as read),
        zero outside it.
        """
        maps = torch.einsum("bkhw,tk->bthw", maps.float(), self.spread().to(maps.device))
        (r0, r1), (c0, c1) = _span(self.rows.any(0)), _span(self.cols.any(0))
        h, w = self.rows.shape[1], self.cols.shape[1]
        along_rows, along_cols = interpolation_weights(self.row_centres, h), interpolation_weights(self.col_centres, w)
        if along_rows is None or along_cols is None:
            inner = F.interpolate(maps, size=(r1 - r0 + 1, c1 - c0 + 1), mode="bilinear", align_corners=False)
            return F.pad(inner, (c0, w - 1 - c1, r0, h - 1 - r1))
        along_rows = along_rows * self.rows.any(0)[:, None]
        along_cols = along_cols * self.cols.any(0)[:, None]
        return torch.einsum("bthw,yh,xw->btyx", maps, along_rows.to(maps.device), along_cols.to(maps.device))


#: footprints found per network: {network: {key (a layer, a clip shape, a wrapping): Footprint, or None
#: where it cannot be known}}; by network, weakly, so a network's entries go with it
FootprintCache = weakref.WeakKeyDictionary


@contextlib.contextmanager
def watching(cache: FootprintCache, net: nn.Module, layer: nn.Module, axes: dict[str, int],
             key: Hashable | None) -> Iterator[None]:
    """Watch the forward pass run inside (:class:`FootprintTracker`) and keep what ``layer`` reads in
    ``cache[net][key]``, once per key: a key already there, or ``None`` (not looked for), watches
    nothing. A forward that raises keeps nothing (its error passes through)."""
    known = cache.setdefault(net, {}) if key is not None else None
    if known is None or key in known:
        yield
        return
    with FootprintTracker(net, layer, axes) as tracker:
        yield
    known[key] = tracker.footprint()


def laying(seen: Footprint | None, grid: tuple[int, ...]) -> Footprint | None:
    """``seen`` where it is the footprint of a ``(T', H', W')`` ``grid`` that stretching over the
    input would misplace (frames, rows or columns left unread; cells centred elsewhere than the
    stretch puts them); else ``None``: the stretch places it the same, bit for bit."""
    if seen is None or tuple(grid) != (seen.frames.shape[0], seen.rows.shape[0], seen.cols.shape[0]):
        return None
    return None if seen.stretched else seen


def _stretch_centres(cells: int, n: int) -> torch.Tensor:
    """Where stretching ``cells`` cells over ``n`` (``align_corners=False``) centres each of them."""
    return (torch.arange(cells, dtype=torch.float64) + 0.5) * n / cells - 0.5


def _span(read: torch.Tensor) -> tuple[int, int]:
    """First and last index where the bool vector ``read`` is true (some is: checked by the caller)."""
    idx = torch.nonzero(read).flatten()
    return int(idx[0]), int(idx[-1])


class FootprintTracker(TorchDispatchMode):
    """Watch one forward pass of ``net`` and say what ``layer``'s output reads of the network's input.

    The input is the tensor ``net`` is called with (the clip as preprocessed: the model's crop box
    at its input size, the frame of a ``"crop"`` map), whose clip axes are at ``axes``
    (``{"T": 2, "H": 3, "W": 4}`` for a ``BCTHW`` network).

    >>> with FootprintTracker(model.net, layer, {"T": 2, "H": 3, "W": 4}) as tracker:
    ...     logits = model(pixels)
    >>> tracker.footprint()        # a Footprint, or None where it cannot be known

    It only watches: every operation runs as the network runs it (its outputs are the very same
    tensors), and an error the network raises passes through unchanged. Its hooks are removed on
    exit, also when the forward raises. Only the first call of the network and of the layer are
    read; the operations after the layer are not followed.
    """

    def __init__(self, net: nn.Module, layer: nn.Module, axes: dict[str, int]) -> None:
        super().__init__()
        self._notes: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._net, self._layer, self._axes = net, layer, dict(axes)
        self._handles: list = []
        self._seeded = self._done = False
        #: tensors that others view (a view's base): a write into one changes the others
        self._viewed: WeakIdKeyDictionary = WeakIdKeyDictionary()
        #: a write that changed what a viewed tensor or a view reads: the rules do not follow it
        self._unsure = False
        #: the note on the layer's main output (None: unknown), once it has run
        self._layer_note: Note | None = None
        self._layer_shape: tuple[int, ...] | None = None

    def __enter__(self) -> "FootprintTracker":
        # prepended: the network's own input, and the layer's own output before a capture's hook
        # puts a copy in its place
        self._handles = [self._net.register_forward_pre_hook(self._at_input, prepend=True),
                         self._layer.register_forward_hook(self._at_layer, prepend=True)]
        try:
            return super().__enter__()
        except BaseException:
            self._remove()
            raise

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _at_input(self, _module: nn.Module, args: tuple) -> None:
        if self._seeded:
            return
        self._seeded = True
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not None and x.dim() > max(self._axes.values()):
            self._notes[x] = {axis: (dim, torch.eye(x.shape[dim], dtype=torch.bool),
                                     torch.arange(x.shape[dim], dtype=torch.float64))
                              for axis, dim in self._axes.items()}

    def _at_layer(self, _module: nn.Module, _inputs: Any, out: Any) -> None:
        if self._done:
            return
        self._done = True
        main = _main(out)
        if main is not None:
            self._layer_note = self._notes.get(main)
            self._layer_shape = tuple(main.shape)

    def footprint(self) -> Footprint | None:
        """What each cell of the layer's ``(B, C, T', H', W')`` output reads; ``None`` where the
        layer did not run, its output is not laid out that way, or the path to it holds an
        operation the rules do not know (see the module docstring)."""
        note, shape = self._layer_note, self._layer_shape
        if self._unsure or note is None or shape is None or len(shape) != 5 or set(note) != set(self._axes):
            return None
        mats, centres = [], []
        for axis, dim in zip(("T", "H", "W"), (2, 3, 4)):
            at, reads, at_centres = note[axis]
            if at == dim:
                mats.append(reads)
                centres.append(at_centres)
            elif at is None and shape[dim] == 1:   # one cell along the axis: it reads what all read
                mats.append(reads[None])
                centres.append(None)
            else:
                return None
        return Footprint(*mats, *centres)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # the network's own operation, run as it is: its errors are its own and pass through
        out = func(*args, **kwargs)
        if self._done or not self._seeded:
            return out
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        for t in outputs:
            if isinstance(t, torch.Tensor) and t._is_view() and t._base is not None:
                self._viewed[t._base] = True   # (views of any tensor: a tracked one may be written into it)
        if not any(t in self._notes for t in _tensors(args, kwargs)):
            return out
        written = args[0] if func._schema.is_mutable and args and isinstance(args[0], torch.Tensor) else None
        before = self._notes.get(written, {}) if written is not None else None
        try:
            note = _propagate(func, args, kwargs, out, self._notes)
        except (IndexError, ValueError, TypeError, RuntimeError, KeyError):
            # arguments the rules misread: this footprint is unknown, and the maps are stretched as
            # before. Only the rules' own work is guarded: the network's operation ran above
            note = None
        if written is not None and (written._is_view() or written in self._viewed) and not _same(before, note):
            # a write that changes what a view reads changes the tensor it views too, and the other
            # views of it (an in-place ReLU changes nothing: a ResNet's `out += x` into no view is followed)
            self._unsure = True
        for i, t in enumerate(outputs):
            if isinstance(t, torch.Tensor):
                # an operation's other outputs (a max-pool's indices, a split's other parts): unknown
                self._notes[t] = note if i == 0 else None
        return out


def _same(a: Note | None, b: Note | None) -> bool:
    """Whether two notes say the same."""
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and a[k][1].shape == b[k][1].shape and torch.equal(a[k][1], b[k][1]) for k in a)


def _centred_at(centres: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """Where the (fractional, possibly outside) positions ``index`` of an axis whose positions are
    centred on ``centres`` would be centred: linear between positions, and beyond the ends at the
    spacing of the last two (a padded position continues the grid); None where unknown (an axis
    of one position has no spacing)."""
    if centres is None:
        return None
    n = centres.numel()
    index = index.double()
    if n == 1:
        return centres.expand(index.shape).clone() if bool((index == 0).all()) else None
    low = index.floor().clamp(0, n - 2).long()
    return centres[low] + (index - low) * (centres[low + 1] - centres[low])


def _main(out: Any) -> torch.Tensor | None:
    """A layer's (or an operation's) main output tensor: itself, or the first of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _tensors(args, kwargs) -> list[torch.Tensor]:
    found = []
    for a in [*args, *kwargs.values()]:
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (tuple, list)):
            found.extend(t for t in a if isinstance(t, torch.Tensor))
    return found


def _merge(notes: list[tuple[Note, tuple[int, ...]]], out_shape: tuple[int, ...]) -> Note | None:
    """Element-wise with broadcasting: each input's note, its dims aligned to ``out_shape`` from the
    right, joined (a position reads what it reads in any input)."""
    merged: Note = {}
    for note, shape in notes:
        offset = len(out_shape) - len(shape)
        for axis, (dim, reads, centres) in note.items():
            if dim is not None:
                new = dim + offset
                if shape[dim] == out_shape[new]:
                    pass
                elif shape[dim] == 1:       # broadcast: every position reads what the one did
                    reads, centres = reads.expand(out_shape[new], -1), None
                else:
                    return None
                dim = new
            merged[axis] = _join(merged.get(axis), (dim, reads, centres))
            if merged[axis] is None:
                return None
    return merged


def _join(a: Entry | None, b: Entry) -> Entry | None:
    """Two ``(dim, reads, centres)`` of one axis on the same tensor → their union; None where the
    axis sits on two different dimensions. Two branches centred differently (a shortcut that pools
    beside a strided convolution) are centred between them; a branch that holds no position along
    the axis (a broadcast, a vector) leaves the other's centres."""
    if a is None:
        return b
    (da, ra, ca), (db, rb, cb) = a, b
    if da is not None and db is not None:
        if da != db:
            return None
        centres = ca if cb is None else cb if ca is None else (ca + cb) / 2
        return da, ra | rb, centres
    if da is None and db is None:
        return None, ra | rb, None
    if da is None:
        return db, rb | ra[None], cb
    return da, ra | rb[None], ca


def _mixed(note: Note, dims: set[int], drop: bool) -> Note:
    """The note after an operation that mixes the positions along ``dims`` (a reduction, a softmax,
    a normalisation over them): an axis on one of them becomes one vector, the union; with
    ``drop`` those dimensions disappear and the later ones move down."""
    out: Note = {}
    for axis, (dim, reads, centres) in note.items():
        if dim is not None and dim in dims:
            entry = (None, reads.any(0), None)
        elif dim is not None and drop:
            entry = (dim - sum(d < dim for d in dims), reads, centres)
        else:
            entry = (dim, reads, centres)
        out[axis] = _join(out.get(axis), entry)
    return out


def _windows(reads: torch.Tensor, out_size: int, kernel: int, stride: int, padding: int,
             dilation: int) -> torch.Tensor:
    """A sliding window's footprint: output position o reads input positions
    ``o·stride − padding + j·dilation`` for ``j < kernel`` that fall inside the input."""
    n = reads.shape[0]
    idx = torch.arange(out_size)[:, None] * stride - padding + torch.arange(kernel)[None] * dilation
    inside = (idx >= 0) & (idx < n)
    rows = reads[idx.clamp(0, n - 1)] & inside[..., None]
    return rows.any(1)


def _adaptive(reads: torch.Tensor, centres: torch.Tensor | None, out_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An adaptive pool's footprint: output position o reads ``⌊o·n/out⌋ … ⌈(o+1)·n/out⌉ − 1``,
    centred on the mean of their centres."""
    n = reads.shape[0]
    windows = [slice((o * n) // out_size, math.ceil((o + 1) * n / out_size)) for o in range(out_size)]
    rows = torch.stack([reads[w].any(0) for w in windows])
    return rows, None if centres is None else torch.stack([centres[w].mean() for w in windows])


def _sliding(note: Note, in_shape, out_shape, kernel, stride, padding, dilation, channels: bool) -> Note:
    """Convolutions and pools over the last ``len(kernel)`` dimensions; with ``channels`` (a
    convolution) the dimension before them, the channels, is mixed too."""
    first = len(in_shape) - len(kernel)
    out: Note = {}
    for axis, (dim, reads, centres) in note.items():
        if dim is not None and dim >= first:
            j = dim - first
            # each window is centred where its middle tap is: o·stride − padding + (kernel − 1)·dilation / 2
            middle = torch.arange(out_shape[dim]) * stride[j] - padding[j] + (kernel[j] - 1) * dilation[j] / 2
            entry = (dim, _windows(reads, out_shape[dim], kernel[j], stride[j], padding[j], dilation[j]),
                     _centred_at(centres, middle))
        elif channels and dim is not None and dim == first - 1:
            entry = (None, reads.any(0), None)
        else:
            entry = (dim, reads, centres)
        out[axis] = _join(out.get(axis), entry)
    return out


def _expand(v, k: int) -> list[int]:
    v = [v] if isinstance(v, int) else list(v)
    return v * k if len(v) == 1 else v


def _reshaped(note: Note, in_shape, out_shape) -> Note | None:
    """A view: a dimension kept whole (the same size, after the same number of elements) keeps its
    axis; one of size 1 leaves a vector; a dimension merged or split makes the footprint unknown."""
    out: Note = {}
    for axis, (dim, reads, centres) in note.items():
        if dim is None or in_shape[dim] == 1:
            entry = (None, reads if dim is None else reads[0], None)
        else:
            before = math.prod(in_shape[:dim])
            match = [e for e in range(len(out_shape))
                     if out_shape[e] == in_shape[dim] and math.prod(out_shape[:e]) == before]
            if len(match) != 1:
                return None
            entry = (match[0], reads, centres)
        out[axis] = _join(out.get(axis), entry)
        if out[axis] is None:
            return None
    return out


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


_VIEWS = {aten.view, aten._unsafe_view, aten.reshape, aten.unsqueeze, aten.squeeze, aten.flatten,
          aten.unflatten}
_SAME = {aten.clone, aten._to_copy, aten.detach, aten.alias, aten.lift_fresh, aten.expand,
         aten._native_batch_norm_legit_no_training}
_BATCH_NORMS = {aten.native_batch_norm, aten._native_batch_norm_legit, aten.cudnn_batch_norm,
                aten.miopen_batch_norm}
#: pools of a sliding window, and how many trailing dimensions they slide over
_POOLS = {aten.max_pool1d_with_indices: 1, aten.max_pool2d_with_indices: 2, aten.max_pool3d_with_indices: 3,
          aten.max_pool1d: 1, aten.max_pool2d: 2, aten.max_pool3d: 3,
          aten.avg_pool1d: 1, aten.avg_pool2d: 2, aten.avg_pool3d: 3}
_ADAPTIVE = {aten._adaptive_avg_pool2d, aten._adaptive_avg_pool3d, aten.adaptive_avg_pool1d,
             aten.adaptive_max_pool2d, aten.adaptive_max_pool3d, aten.adaptive_avg_pool2d,
             aten.adaptive_avg_pool3d}
_REDUCTIONS = {aten.mean, aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.logsumexp, aten.var,
               aten.std, aten.var_mean, aten.std_mean}
_SOFTMAX = {aten._softmax, aten._log_softmax, aten.softmax, aten.log_softmax}


def _propagate(func, args, kwargs, out, notes) -> Note | None:
    """The note on ``func``'s main output from the notes on its inputs; None: unknown."""
    inputs = [(notes[t], tuple(t.shape)) for t in _tensors(args, kwargs) if t in notes]
    main = _main(out)
    if main is None or any(n is None for n, _ in inputs):
        return None
    out_shape = tuple(main.shape)
    packet = func.overloadpacket
    named = dict(zip((a.name for a in func._schema.arguments), args)) | kwargs

    if torch.Tag.pointwise in func.tags or packet in _SAME:
        return _merge(inputs, out_shape)
    if packet is aten.cat:
        tensors = named["tensors"]
        return _concatenated(tensors, _dim(named.get("dim", 0), max(t.dim() for t in tensors)), out_shape, notes)
    first = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if first is None or first not in notes or len(inputs) != 1:
        # not element-wise, and on two tracked tensors or with its tracked input elsewhere than
        # first (a convolution whose weight is computed from the input): not followed
        return None
    note0, shape0 = notes[first], tuple(first.shape)
    ndim = len(shape0)
    if packet in _BATCH_NORMS:
        if named.get("training", False):   # batch statistics: every position of a channel mixed
            return _mixed(note0, set(range(ndim)) - {1}, drop=False)
        return _merge([(note0, shape0)], out_shape)
    if packet in _VIEWS:
        return _reshaped(note0, shape0, out_shape)
    if packet is aten.permute:
        dims = [_dim(d, ndim) for d in named["dims"]]
        return {a: (None if d is None else dims.index(d), r, c) for a, (d, r, c) in note0.items()}
    if packet is aten.transpose or packet is aten.t:
        d0, d1 = _dim(named.get("dim0", 0), ndim), _dim(named.get("dim1", 1), ndim)
        swap = {d0: d1, d1: d0}
        return {a: (None if d is None else swap.get(d, d), r, c) for a, (d, r, c) in note0.items()}
    if packet is aten.slice:
        dim = _dim(named.get("dim", 0), ndim)
        cut = slice(named.get("start"), named.get("end"), named.get("step", 1))
        return {a: (d, r[cut], None if c is None else c[cut]) if d == dim else (d, r, c)
                for a, (d, r, c) in note0.items()}
    if packet is aten.select:
        dim, index = _dim(named["dim"], ndim), named["index"]
        return {a: ((None, r[index], None) if d == dim else (d if d is None or d < dim else d - 1, r, c))
                for a, (d, r, c) in note0.items()}
    if packet is aten.constant_pad_nd:
        return _padded(note0, shape0, list(named["pad"]))
    if packet in _REDUCTIONS:
        dims = named.get("dim")
        dims = range(ndim) if dims is None or dims == [] else [dims] if isinstance(dims, int) else dims
        return _mixed(note0, {_dim(d, ndim) for d in dims}, drop=not named.get("keepdim", False))
    if packet in _SOFTMAX:
        return _mixed(note0, {_dim(named["dim"], ndim)}, drop=False)
    if packet is aten.native_layer_norm:
        k = len(named["normalized_shape"])
        return _mixed(note0, set(range(ndim - k, ndim)), drop=False)
    if packet is aten.native_group_norm:
        return _mixed(note0, set(range(1, ndim)), drop=False)
    if packet is aten.convolution:
        if named["transposed"]:
            return None
        k = args[1].dim() - 2
        return _sliding(note0, shape0, out_shape, list(args[1].shape[2:]), _expand(named["stride"], k),
                        _expand(named["padding"], k), _expand(named["dilation"], k), channels=True)
    if packet in _POOLS:
        k = _POOLS[packet]
        kernel = _expand(named["kernel_size"], k)
        stride = _expand(named.get("stride") or kernel, k)
        dilation = _expand(named.get("dilation", 1), k)
        return _sliding(note0, shape0, out_shape, kernel, stride, _expand(named.get("padding", 0), k), dilation,
                        channels=False)
    if packet in _ADAPTIVE:
        first_dim = ndim - len(named["output_size"])
        return {a: (d, *_adaptive(r, c, out_shape[d])) if d is not None and d >= first_dim else (d, r, c)
                for a, (d, r, c) in note0.items()}
    return None


def _concatenated(tensors, dim: int, out_shape, notes) -> Note | None:
    """``torch.cat`` along ``dim``: an axis on that dimension is each input's rows one after the
    other (an input that does not read along the axis: rows that read nothing); an axis elsewhere
    is joined as by an element-wise operation."""
    parts = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)]   # cat's legacy empty tensors
    axes = {a for t in parts if t in notes for a in notes[t]}
    if not any(d == dim for t in parts if t in notes for d, *_ in notes[t].values()):
        return _merge([(notes[t], tuple(t.shape)) for t in parts if t in notes], out_shape)
    out: Note = {}
    for axis in axes:
        entries = [notes[t].get(axis) if t in notes else None for t in parts]
        if not any(e is not None and e[0] == dim for e in entries):
            joined = None
            for e in entries:
                if e is not None:
                    joined = _join(joined, e)
            if joined is None:
                return None
            out[axis] = joined
            continue
        n = next(e[1].shape[-1] for e in entries if e is not None)
        rows, centres = [], []
        for t, e in zip(parts, entries):
            if e is None:
                rows.append(torch.zeros(t.shape[dim], n, dtype=torch.bool))
                centres.append(None)
            elif e[0] == dim:
                rows.append(e[1])
                centres.append(e[2])
            elif e[0] is None:
                rows.append(e[1][None].expand(t.shape[dim], -1))
                centres.append(None)
            else:   # the axis on the concatenated dimension in one input, on another in one more
                return None
        # positions that do not come from the axis's own positions have no centre of their own
        out[axis] = (dim, torch.cat(rows), None if any(c is None for c in centres) else torch.cat(centres))
    return out


def _padded(note: Note, shape, pad: list[int]) -> Note:
    """``F.pad`` with a constant: ``pad`` holds (before, after) pairs from the last dimension on; a
    negative one crops."""
    out: Note = {}
    ndim = len(shape)
    for axis, (dim, reads, centres) in note.items():
        k = ndim - 1 - dim if dim is not None else None
        if dim is not None and 2 * k + 1 < len(pad):
            lo, hi = pad[2 * k], pad[2 * k + 1]
            size = reads.shape[0]
            reads = reads[max(-lo, 0): size - max(-hi, 0)]
            n = reads.shape[1]
            reads = torch.cat([torch.zeros(max(lo, 0), n, dtype=torch.bool), reads,
                               torch.zeros(max(hi, 0), n, dtype=torch.bool)])
            # the padded positions continue the grid: position i was position i − lo
            centres = _centred_at(centres, torch.arange(reads.shape[0]) - lo)
        out[axis] = (dim, reads, centres)
    return out
