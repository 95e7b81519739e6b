"""Swap in plain NumPy and Python, one board at a time: the way a gym environment is usually
written (the paper's own is a Python object drawn with pygame, batched by gymnasium's
SyncVectorEnv, i.e. a host loop over boards).

Two uses:
  * the baseline `bench.env` runs side by side with jaxgym (a host loop over boards);
  * the oracle the tests compare `jaxgym.games.swap` against, draw for draw: it takes the same
    32-bit seed and re-implements the same counter-based hash (`jaxgym.chance`) in NumPy, so a
    step here and a step there must give the same board and reward.

Everything is written the direct way (try every swap, scan every line) rather than the
vectorised way jaxgym uses, so that the two implementations check each other.
"""

from __future__ import annotations

import math

import numpy as np

_MASK32 = 0xFFFFFFFF


def mix32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 on uint32, with explicit wrap-around."""
    x = np.asarray(x, np.uint64) & _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    x ^= x >> 16
    return x


def cell_bits(seed: int, draw: int, n: int) -> np.ndarray:
    stream = mix32(np.uint64(seed) ^ mix32(np.uint64((draw + 0x9E3779B9) & _MASK32)))
    cells = np.arange(n, dtype=np.uint64)
    return mix32((stream + cells * 0x85EBCA6B) & _MASK32)


def cell_ints(seed: int, draw: int, shape: tuple[int, int], n_types: int) -> np.ndarray:
    return (cell_bits(seed, draw, math.prod(shape)) % n_types).astype(np.int64).reshape(shape)


def find_runs(board: np.ndarray) -> np.ndarray:
    """bool[rows, cols]: cells in a line of >= 3 equal tiles, found by scanning every line."""
    rows, cols = board.shape
    runs = np.zeros(board.shape, bool)
    for r in range(rows):
        for c in range(cols):
            t = board[r, c]
            if t < 0:
                continue
            if c + 2 < cols and board[r, c + 1] == t and board[r, c + 2] == t:
                runs[r, c : c + 3] = True
            if r + 2 < rows and board[r + 1, c] == t and board[r + 2, c] == t:
                runs[r : r + 3, c] = True
    return runs


def all_swaps(rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """Every swap in jaxgym's action order: horizontal row-major, then vertical row-major."""
    horizontal = [(r, c, r, c + 1) for r in range(rows) for c in range(cols - 1)]
    vertical = [(r, c, r + 1, c) for r in range(rows - 1) for c in range(cols)]
    return horizontal + vertical


def swapped(board: np.ndarray, r1: int, c1: int, r2: int, c2: int) -> np.ndarray:
    out = board.copy()
    out[r1, c1], out[r2, c2] = board[r2, c2], board[r1, c1]
    return out


def first_round_cells(board: np.ndarray, move: tuple[int, int, int, int]) -> int:
    """Cells the first round removes after `move` (0: the swap is invalid)."""
    return int(find_runs(swapped(board, *move)).sum())


def legal_moves(board: np.ndarray) -> np.ndarray:
    """bool[num_actions]: which swaps make a run, by trying each one."""
    rows, cols = board.shape
    return np.array([first_round_cells(board, m) > 0 for m in all_swaps(rows, cols)], bool)


def drop_and_refill(board: np.ndarray, cleared: np.ndarray, new_tiles: np.ndarray) -> np.ndarray:
    out = board.copy()
    for c in range(board.shape[1]):
        kept = [board[r, c] for r in range(board.shape[0]) if not cleared[r, c]]
        n_new = board.shape[0] - len(kept)
        out[:, c] = list(new_tiles[:n_new, c]) + kept
    return out


def reshuffle(board: np.ndarray, seed: int, draw: int) -> np.ndarray:
    rows, cols = board.shape
    n = rows * cols
    bits = cell_bits(seed, draw, rows + cols + 2)
    shifted = np.empty_like(board)
    for r in range(rows):
        for c in range(cols):
            shifted[r, c] = board[r, (c + int(bits[r] % cols)) % cols]
    twice = np.empty_like(board)
    for r in range(rows):
        for c in range(cols):
            twice[r, c] = shifted[(r + int(bits[rows + c] % rows)) % rows, c]
    units = [a for a in range(1, n) if math.gcd(a, n) == 1]
    a, b = units[int(bits[-2] % len(units))], int(bits[-1] % n)
    flat = twice.ravel()
    return np.array([flat[(a * i + b) % n] for i in range(n)]).reshape(rows, cols)


class NumpySwap:
    """One Swap board game at a time. Same rules, bounds and draws as `jaxgym.make("swap")`."""

    def __init__(self, rows=8, cols=8, colours=4, shapes=3, max_cascade_rounds=32, max_settle_tries=64):
        self.rows, self.cols, self.n_types = rows, cols, colours * shapes
        self.max_rounds, self.max_tries = max_cascade_rounds, max_settle_tries

    def resolve(self, board: np.ndarray, seed: int, scoring: bool) -> tuple[np.ndarray, int, bool]:
        """(board, score, ok): the cascade of a move (if `scoring`), then re-draws of runs and
        reshuffles of stuck boards, with the same bounds and draw numbers as jaxgym."""
        score, rounds = 0, 0
        runs = find_runs(board)
        while scoring and runs.any() and rounds < self.max_rounds:
            k = int(runs.sum())
            score += k * (k - 1)
            board = drop_and_refill(board, runs, cell_ints(seed, 2 * rounds, board.shape, self.n_types))
            runs = find_runs(board)
            rounds += 1
        tries = 0
        while (runs.any() or not legal_moves(board).any()) and tries < self.max_tries:
            draw = rounds + tries
            if runs.any():
                board = np.where(runs, cell_ints(seed, 2 * draw, board.shape, self.n_types), board)
            else:
                board = reshuffle(board, seed, 2 * draw + 1)
            runs = find_runs(board)
            tries += 1
        return board, score, not runs.any() and legal_moves(board).any()

    def deal(self, seed: int) -> np.ndarray:
        board = cell_ints(seed, 0, (self.rows, self.cols), self.n_types)
        return self.resolve(board, (seed + 1) & _MASK32, scoring=False)[0]

    def step(self, board: np.ndarray, move: tuple[int, int, int, int], seed: int) -> tuple[np.ndarray, float]:
        """(new board, reward): -1 and the same board for a swap that makes no run."""
        r1, c1, r2, c2 = move
        on_board = all(0 <= r < self.rows and 0 <= c < self.cols for r, c in ((r1, c1), (r2, c2)))
        if not on_board or abs(r1 - r2) + abs(c1 - c2) != 1 or first_round_cells(board, move) == 0:
            return board, -1.0
        new_board, score, _ = self.resolve(swapped(board, *move), seed, scoring=True)
        return new_board, float(score)

    def expert_move(self, board: np.ndarray) -> tuple[int, int, int, int]:
        moves = all_swaps(self.rows, self.cols)
        return max(moves, key=lambda m: (first_round_cells(board, m), -moves.index(m)))
