"""A prefix tree (trie) of token sequences in flat arrays: built with numpy, walked on the device.

Constrained decoding (note 7) keeps every beam inside a set of allowed
sequences, e.g. the tokenised `S [SEP] P [SEP] M [SEP]` facts of a knowledge base.
A beam's state is one int32, its trie node; per decoding step the model needs
the allowed-next-token mask of every beam and the new node after the chosen
token. Both are jax.numpy functions of a small pytree of arrays, so they run
inside a jitted `lax.while_loop`/`scan` with no Python call per step (unlike a
`prefix_allowed_tokens_fn` callback):

    trie = build_trie_from_sequences(seqs, vocab_size)   # host, numpy, vectorised
    arrays = to_device(trie)                             # TrieArrays of jnp arrays (a pytree)
    nodes = jnp.full([beams], ROOT, jnp.int32)
    mask = next_token_mask(arrays, nodes, vocab_size)    # bool [beams, vocab]
    nodes = advance(arrays, nodes, tokens)               # int32 [beams]; DEAD (-1) = left the trie

Layout (`TrieArrays`). Nodes are numbered breadth-first, and within a depth in
the lexicographic order of their prefixes; node 0 (ROOT) is the empty prefix.
Numbered so, the children of every node are consecutive node ids, sorted by
token, and the children of node v come right after those of node v-1. Hence
two arrays describe every edge (CSR with the edge index equal to the child id):
  first_child[v] .. first_child[v+1]-1   the children of v  (int32 [num_nodes + 1])
  token[c]                               the token on the edge into node c  (int32 [num_nodes]; -1 at ROOT)
plus
  value[v]       index of the input sequence that ends at v, else -1 (int32 [num_nodes]);
                 duplicates of a sequence share the node, which keeps the smallest index
  root_mask      the root's allowed tokens, precomputed dense (bool [vocab_size])
  slots          arange(K), K = the largest fan-out of a non-root node (>= 1): its
                 *shape* carries K into jit as a static number
  end_token      int32 scalar (default 0, [PAD]).

End of a sequence. A node at which an input sequence ends ("terminal") allows
`end_token` besides its children, and `advance` from a terminal node by
`end_token` stays on that node: a finished beam can be padded with end_token for
the rest of a fixed-length loop and still names its sequence via `value[node]`.
For sequences where no sequence is a prefix of another (as `S [SEP] P [SEP] M
[SEP]`: every full target holds exactly three [SEP]), a terminal node is a leaf
and allows end_token only. Sequences must not contain end_token (checked).
DEAD (-1, "left the trie": a token outside the mask was taken) allows nothing:
its mask row is all False (beam search gives such a beam -inf) and it stays DEAD.

Cost per decoding step, B beams, vocabulary V, K the largest non-root fan-out:
  next_token_mask: O(B*V) to form the dense mask (the size of the logits it is
    added to) + O(B*K) gathers of child tokens scattered into it; the root's row
    is the precomputed root_mask, so K excludes the root's fan-out (the largest:
    every first token). K <= V, so a step costs at most ~2x a dense [B, V] pass.
  advance: O(B*log2 V) - a fixed-length binary search over the sorted children.
Device memory: 12 bytes a node + V bytes.

Build (`build_trie`): one lexicographic sort of the padded rows (np.lexsort),
then two chunked passes over the sorted rows in numpy: the first finds where
each row first differs from the previous one, which fixes the node count at
every depth (a row creates nodes at the depths from there to its end); the
second numbers the new nodes breadth-first with cumulative sums down the rows,
and counts children per node from their parents (runs of equal parent ids).
No Python loop runs per sequence or per token; the Python loops run per chunk
of rows and per depth. Time O(N*L*log N) for the sort plus O(N*L), memory
~12 bytes a node + ~17 bytes a sequence + one chunk of work (`python scripts/bench.py
trie_build trie_vs_dict` measures it, the latter against a dict-of-dicts trie).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

ROOT = 0   # the node of the empty prefix: where every beam starts
DEAD = -1  # the state of a beam that left the trie


class TrieArrays(NamedTuple):
  """The trie as flat arrays (numpy on the host, jax after `to_device`); a pytree."""
  first_child: Any  # int32 [num_nodes + 1]: children of v are nodes first_child[v]..first_child[v+1]-1
  token: Any        # int32 [num_nodes]: token on the edge into the node (-1 at ROOT)
  value: Any        # int32 [num_nodes]: index of the input sequence ending here, else -1
  root_mask: Any    # bool [vocab_size]: tokens allowed at ROOT (children only)
  slots: Any        # int32 [K]: arange(K), K = max fan-out of a non-root node (shape is static)
  end_token: Any    # int32 []: allowed after a terminal node, where it keeps the node

  @property
  def num_nodes(self) -> int:
    return int(self.token.shape[0])

  @property
  def vocab_size(self) -> int:
    return int(self.root_mask.shape[0])

  @property
  def max_fanout(self) -> int:
    """K: the largest number of children of a non-root node (at least 1)."""
    return int(self.slots.shape[0])

  def nbytes(self) -> int:
    return int(sum(a.nbytes for a in self))


# ---------------------------------------------------------------- build (host, numpy)

def pad_sequences(sequences: Iterable[Sequence[int]], pad_value: int = 0,
                  dtype=None) -> tuple[np.ndarray, np.ndarray]:
  """Sequences of ints -> (tokens [N, L] filled with pad_value past each end, lengths int32 [N]).

  Vectorised over the flattened tokens (one Python pass to flatten); dtype
  defaults to the smallest of uint16 / int32 / int64 that holds every token and pad_value.
  """
  sequences = [np.asarray(s).reshape(-1) for s in sequences]
  lengths = np.fromiter((len(s) for s in sequences), np.int32, count=len(sequences))
  flat = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
  if dtype is None:
    lo = min(int(flat.min()) if flat.size else 0, pad_value)
    hi = max(int(flat.max()) if flat.size else 0, pad_value)
    dtype = (np.uint16 if lo >= 0 and hi < 2**16 else np.int32 if -2**31 <= lo and hi < 2**31 else np.int64)
  width = int(lengths.max()) if len(lengths) else 0
  tokens = np.full((len(sequences), width), pad_value, dtype)
  rows = np.repeat(np.arange(len(sequences)), lengths)
  starts = np.cumsum(lengths) - lengths
  cols = np.arange(flat.size) - np.repeat(starts, lengths)
  tokens[rows, cols] = flat
  return tokens, lengths


def build_trie_from_sequences(sequences: Iterable[Sequence[int]], vocab_size: int,
                              end_token: int = 0) -> TrieArrays:
  """The trie of `sequences` (lists/arrays of token ids); see `build_trie`."""
  tokens, lengths = pad_sequences(sequences, pad_value=end_token)
  return build_trie(tokens, lengths, vocab_size, end_token)


def build_trie(tokens: np.ndarray, lengths: np.ndarray, vocab_size: int, end_token: int = 0,
               chunk_rows: int = 1 << 14) -> TrieArrays:
  """The trie of N padded sequences, as numpy `TrieArrays`.

  tokens: integer [N, L]; row i is sequence i in tokens[i, :lengths[i]] and
  holds `end_token` from lengths[i] on (what `pad_sequences` writes). Tokens
  lie in [0, vocab_size) and are not end_token (ValueError otherwise, naming
  the sequence). `value[node]` refers to row indices of `tokens`.
  chunk_rows only bounds the working memory of the two passes.
  """
  tokens = np.asarray(tokens)
  lengths = np.asarray(lengths)
  if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
    raise ValueError(f"tokens must be [N, L] and lengths [N]; got {tokens.shape} and {lengths.shape}")
  if not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be integers, got {tokens.dtype}")
  if not 0 <= end_token < vocab_size:
    raise ValueError(f"end_token {end_token} is not in [0, vocab_size={vocab_size})")
  num_rows, width = tokens.shape
  if num_rows and (lengths.min() < 0 or lengths.max() > width):
    raise ValueError(f"lengths must lie in [0, {width}]")
  if num_rows and width and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
    r = int(np.flatnonzero(((tokens < 0) | (tokens >= vocab_size)).any(1))[0])
    raise ValueError(f"sequence {r}: tokens must lie in [0, vocab_size={vocab_size})")

  # Rows in lexicographic order (column 0 first). Pads hold end_token, which no
  # sequence contains, so rows sharing a prefix are contiguous and, inside a
  # group, the next tokens ascend: the breadth-first numbering below relies on it.
  order = np.lexsort(tokens.T[::-1]) if width and num_rows else np.arange(num_rows)
  sorted_len = lengths[order].astype(np.int32)
  chunk_rows = max(1, int(chunk_rows))
  positions = np.arange(width, dtype=np.int32)

  # Pass 1: first[r] = the first depth where sorted row r differs from row r-1
  # (width when identical, 0 for the first row); the padding is checked on the way.
  first = np.empty(num_rows, np.int32)
  for a in range(0, num_rows, chunk_rows):
    b = min(a + chunk_rows, num_rows)
    rows = tokens[order[max(a - 1, 0):b]]
    body = rows[1:] if a else rows
    misplaced = (body == end_token) == (positions[None, :] < sorted_len[a:b, None])
    if misplaced.any():
      r = int(order[a + int(np.flatnonzero(misplaced.any(1))[0])])
      raise ValueError(f"sequence {r}: must not contain end_token={end_token}, and the padding past "
                       f"its length ({int(lengths[r])}) must be end_token")
    differs = rows[1:] != rows[:-1]
    firsts = np.where(differs.any(1), differs.argmax(1), width)
    first[a + (a == 0):b] = firsts
  if num_rows:
    first[0] = 0
  duplicate = first == width
  duplicate[:1] = False  # (a lone first row of width 0 is no duplicate)
  start = np.minimum(first, sorted_len)  # row r creates the nodes at depths start[r] .. len[r]-1

  # Nodes per depth: #(start <= d) - #(len <= d), as start <= len.
  per_depth = (np.cumsum(np.bincount(start, minlength=width + 1))[:width]
               - np.cumsum(np.bincount(sorted_len, minlength=width + 1))[:width])
  depth_base = 1 + np.concatenate([[0], np.cumsum(per_depth)])  # first id at each depth (+ the end)
  num_nodes = int(depth_base[-1])
  if num_nodes >= 2**31 - 1:
    raise ValueError(f"{num_nodes} nodes do not fit int32 ids")
  token = np.empty(num_nodes, np.int32)
  value = np.full(num_nodes, -1, np.int32)
  first_child = np.empty(num_nodes + 1, np.int32)
  token[0], first_child[0], first_child[num_nodes] = -1, 1, num_nodes
  empty = np.flatnonzero((sorted_len == 0) & ~duplicate)
  if empty.size:
    value[0] = order[empty[0]]

  # Pass 2, depth-major ([width, rows] blocks, so cumsums run along memory). The
  # node of row r at depth d is id(d, r) = depth_base[d] - 1 + (new nodes at depth
  # d in rows <= r): rows sharing a node agree on it. The new nodes of a block at
  # depth d get consecutive ids, so token and first_child are written as slices.
  # A new node (d, r) has its first child where the next new node at depth d+1
  # would be numbered: id(d+1, r) + 1 - new(d+1, r) (its children follow from row r).
  assigned = np.zeros(width, np.int64)  # new nodes numbered so far at each depth
  for a in range(0, num_rows, chunk_rows):
    b = min(a + chunk_rows, num_rows)
    rows = tokens[order[a:b]].T
    new = (positions[:, None] >= start[None, a:b]) & (positions[:, None] < sorted_len[None, a:b])
    ids = np.cumsum(new, axis=1, dtype=np.int32)
    counts = ids[:, -1].astype(np.int64)
    ids += (depth_base[:width] - 1 + assigned).astype(np.int32)[:, None]
    next_child = np.empty_like(ids)
    next_child[:-1] = ids[1:] + 1 - new[1:]
    next_child[-1:] = num_nodes
    new_tokens, new_next = rows[new], next_child[new]  # depth-major order
    dst, src = depth_base[:width] + assigned, np.concatenate([[0], np.cumsum(counts)])
    for d in np.flatnonzero(counts):
      token[dst[d]:dst[d] + counts[d]] = new_tokens[src[d]:src[d + 1]]
      first_child[dst[d]:dst[d] + counts[d]] = new_next[src[d]:src[d + 1]]
    ends = np.flatnonzero((sorted_len[a:b] > 0) & ~duplicate[a:b])
    value[ids[sorted_len[a + ends] - 1, ends]] = order[a + ends]
    assigned += counts
  root_mask = np.zeros(vocab_size, bool)
  root_mask[token[1:first_child[1]]] = True
  max_fanout = 1  # over non-root nodes, in blocks (a full diff would cost 4 bytes a node)
  for a in range(1, num_nodes, 1 << 20):
    block = first_child[a:min(a + (1 << 20), num_nodes) + 1]
    max_fanout = max(max_fanout, int((block[1:] - block[:-1]).max()))
  return TrieArrays(first_child=first_child, token=token, value=value, root_mask=root_mask,
                    slots=np.arange(max_fanout, dtype=np.int32), end_token=np.int32(end_token))


def to_device(trie: TrieArrays, device=None) -> TrieArrays:
  """The same arrays as jax arrays (on `device`, default the default device)."""
  import jax  # pylint: disable=g-import-not-at-top
  return TrieArrays(*(jax.device_put(np.asarray(a), device) for a in trie))


# ---------------------------------------------------------------- host helpers (numpy)

def children(trie: TrieArrays, node: int) -> tuple[np.ndarray, np.ndarray]:
  """(tokens, child nodes) of `node`, tokens ascending."""
  lo, hi = int(trie.first_child[node]), int(trie.first_child[node + 1])
  return np.asarray(trie.token[lo:hi]), np.arange(lo, hi, dtype=np.int32)


def walk(trie: TrieArrays, sequence: Iterable[int], node: int = ROOT) -> int:
  """The node reached from `node` by `sequence` on the host (DEAD if it leaves the trie);
  the host twin of `advance`, end_token included."""
  first_child, token, value = (np.asarray(a) for a in (trie.first_child, trie.token, trie.value))
  end = int(trie.end_token)
  for t in sequence:
    if node < 0:
      return DEAD
    t = int(t)
    if t == end:
      node = node if value[node] >= 0 else DEAD
      continue
    lo, hi = int(first_child[node]), int(first_child[node + 1])
    i = lo + int(np.searchsorted(token[lo:hi], t))
    node = i if i < hi and token[i] == t else DEAD
  return node


def contains(trie: TrieArrays, sequence: Iterable[int]) -> bool:
  """Whether `sequence` is one of the trie's sequences (not just a prefix of one)."""
  node = walk(trie, sequence)
  return node >= 0 and int(trie.value[node]) >= 0


def parents(trie: TrieArrays) -> np.ndarray:
  """int32 [num_nodes]: the parent of every node (-1 at ROOT)."""
  first_child = np.asarray(trie.first_child)
  out = np.searchsorted(first_child, np.arange(len(first_child) - 1), side="right") - 1
  out[0] = -1
  return out.astype(np.int32)


def prefix(trie: TrieArrays, node: int) -> list[int]:
  """The token sequence from ROOT to `node` (host; O(depth log num_nodes))."""
  first_child, token = np.asarray(trie.first_child), np.asarray(trie.token)
  out = []
  while node > 0:
    out.append(int(token[node]))
    node = int(np.searchsorted(first_child, node, side="right")) - 1
  return out[::-1]


# ---------------------------------------------------------------- device (jax.numpy)

def next_token_mask(trie: TrieArrays, node_ids, vocab_size: int | None = None):
  """bool [B, vocab_size]: which tokens each beam may take next.

  node_ids int32 [B]. Row b allows the child tokens of node_ids[b], plus
  end_token if a sequence ends there; nothing for DEAD. vocab_size (a Python
  int, static under jit) defaults to the trie's; a larger one pads with False.
  Pure jax.numpy on the pytree `trie`: use inside jit / lax.while_loop.
  Cost O(B*(V + K)), K = trie.max_fanout (the root row is precomputed).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  vocab = trie.root_mask.shape[0]
  vocab_size = vocab if vocab_size is None else vocab_size
  if vocab_size < vocab:
    raise ValueError(f"vocab_size {vocab_size} is smaller than the trie's vocabulary ({vocab})")
  node_ids = jnp.asarray(node_ids, jnp.int32)
  alive = node_ids >= 0
  node = jnp.maximum(node_ids, 0)
  lo, hi = trie.first_child[node], trie.first_child[node + 1]
  edge = lo[:, None] + trie.slots[None, :]                              # [B, K]
  real = (edge < hi[:, None]) & alive[:, None] & (node != ROOT)[:, None]
  child_token = jnp.where(real, trie.token[jnp.minimum(edge, trie.token.shape[0] - 1)], vocab_size)
  beams = jnp.arange(node.shape[0])[:, None]
  mask = jnp.zeros((node.shape[0], vocab_size), bool).at[beams, child_token].set(True, mode="drop")
  root_row = jnp.pad(trie.root_mask, (0, vocab_size - vocab))
  mask = jnp.where((node_ids == ROOT)[:, None], root_row[None, :], mask)
  terminal = alive & (trie.value[node] >= 0)
  is_end = jnp.arange(vocab_size) == trie.end_token
  return mask | (terminal[:, None] & is_end[None, :])


def advance(trie: TrieArrays, node_ids, tokens):
  """int32 [B]: the node after each beam takes its token (DEAD if the token leaves the trie).

  end_token keeps a terminal node where it is; DEAD stays DEAD. A fixed-length
  binary search over the node's sorted children: O(B log2 V), no Python per step.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  node_ids = jnp.asarray(node_ids, jnp.int32)
  tokens = jnp.asarray(tokens, jnp.int32)
  alive = node_ids >= 0
  node = jnp.maximum(node_ids, 0)
  lo, hi = trie.first_child[node], trie.first_child[node + 1]
  last = trie.token.shape[0] - 1
  left, right = lo, hi  # lower bound of `tokens` in token[lo:hi]
  for _ in range(max(int(trie.root_mask.shape[0]), 2).bit_length()):  # fan-out <= V
    mid = (left + right) // 2
    open_ = left < right
    go_right = open_ & (trie.token[jnp.minimum(mid, last)] < tokens)
    left, right = jnp.where(go_right, mid + 1, left), jnp.where(open_ & ~go_right, mid, right)
  found = (left < hi) & (trie.token[jnp.minimum(left, last)] == tokens)
  stays = (tokens == trie.end_token) & (trie.value[node] >= 0)
  out = jnp.where(stays, node, jnp.where(found, left, DEAD))
  return jnp.where(alive, out, DEAD).astype(jnp.int32)
