"""Every tuning value of the search engine, in one place.

A *tuning value* trades speed against memory (block sizes, working-memory
budgets, the size from which a faster path pays for its set-up); it never
changes a result. The rule:

* results do not depend on any value here, bit for bit: every path a value
  chooses between computes the same float32 sums in the same order and breaks
  ties by item index. ``tests/test_tuning.py`` sets each one to extreme values
  (1, 0 where it disables a path, larger than the data) and checks that the
  exhaustive, inverted-list, radius, torch (CPU) searches and ``score`` return
  what the defaults return;
* values that make a result *correct* (the exact float16 range of the torch
  integer scan, ``skdqn.search._torch_kernel.FLOAT16_MAX_SUM``; the uint16 range of
  ``skdqn.search._qscan``; the packed-key bounds of ``skdqn.search._ranking``) and the
  format constants stay in their modules: they are not tuning;
* code reads a value when it runs, through this module
  (``from . import _tuning`` ... ``_tuning.NARROW``), so a test or a user
  changes it in one place (``monkeypatch.setattr(skdqn.search._tuning, "NARROW",
  3)``); block sizes chosen per search (:func:`skdqn.search._search.scan_blocks`)
  take their defaults from here too.

Each value below says what it trades, how it was chosen and the command that
measures it again on another machine::

    python benchmarks/bench_tuning.py --only NAME      # one value, swept around its default
    python benchmarks/bench_tuning.py --quick          # every value, a small run

The script prints the seconds of a representative workload (one thread) for
each value it tries and the best one for the machine it runs on. A value
measured better elsewhere may be changed here freely: the tests guard the
results, not the speed.

This module imports nothing from the package (it is the bottom layer).
"""

# ------------------------------------------------------------------ exhaustive scan (_search, _scan)

#: Queries per task of the exhaustive search (the default of
#: ``ScanBlocks.query``, :func:`skdqn.search._search.scan_blocks`); one float32 table
#: row of the numpy scan is this wide.
#: Trades: memory for speed: a task holds ``QUERY_BLOCK * M * K`` floats of
#: tables (1 MiB at M = 8, K = 256) and ``2 * QUERY_BLOCK * DB_BLOCK`` floats
#: of distances (4 MiB); wider rows amortise each code's look-ups over more
#: queries until the working set leaves the cache.
#: Chosen: 128 (1 MiB of tables and 4 MiB of distances per task: within
#: the cache of one core). Swept on a shared 2-core machine (2026-12):
#: 10^5 codes, 200 queries: 32/64/256/512 took 1.47/1.09/1.03/1.10x the
#: time of 128; 10^6 codes, 1,000 queries: 1.92/1.20/0.91/0.86x (wider
#: blocks pay on large batches, at 4x the memory for 512).
#: Command: python benchmarks/bench_tuning.py --only QUERY_BLOCK
QUERY_BLOCK = 128

#: Codes scanned at a time inside a task (the default of ``ScanBlocks.database``
#: and of every kernel's ``db_block``).
#: Trades: memory for speed: the block's distances are ``2 * QUERY_BLOCK *
#: DB_BLOCK`` floats; longer calls amortise numpy's per-call cost and let
#: threads scale.
#: Chosen: 4,096 (long enough calls for threads to scale, 4 MiB of distances).
#: Swept (--quick, 10^5 codes, 200 queries): 1,024/2,048/8,192/16,384 took
#: 1.36/1.08/1.16/1.52x the time of 4,096.
#: Command: python benchmarks/bench_tuning.py --only DB_BLOCK
DB_BLOCK = 4096

#: A k-NN search with ``n_neighbors * FULL_SORT_RATIO >= n_database`` computes
#: every distance of a query block and sorts them (``method="full_sort"``)
#: instead of filtering by a running k-th distance.
#: Trades: speed: when ``k`` is a large part of the database the running
#: threshold filters little and the full sort is faster; below, it sorts far
#: more than it keeps. Memory: the full sort holds ``FULL_SORT_BYTES_PER_ITEM``
#: bytes per (query, item), within ``working_memory``.
#: Chosen: 16 (k a sixteenth of the database or more).
#: Command: python benchmarks/bench_tuning.py --only FULL_SORT_RATIO
FULL_SORT_RATIO = 16

#: Bytes per (query, database item) that the full sort is assumed to take
#: (float32 distances, their transposed copy and the int64 argsort): a quarter
#: of ``working_memory`` divided by this and by ``n_database`` gives its
#: queries per block (:func:`skdqn.search._search.full_sort_block`).
#: Trades: memory for speed: a smaller value puts more queries in a block.
#: Chosen: 16, the bytes the full sort allocates per (query, item).
#: Command: python benchmarks/bench_tuning.py --only FULL_SORT_BYTES_PER_ITEM
FULL_SORT_BYTES_PER_ITEM = 16

#: A database shard of a search with several workers holds at least this many
#: scan blocks (65,536 items at ``DB_BLOCK = 4096``); the database is sharded
#: only when there are fewer query blocks than workers.
#: Trades: parallelism against scheduling: smaller shards keep more workers
#: busy on a few queries, each task costs its dispatch and a merge.
#: Chosen: 16 (a task then scans long enough to pay for its scheduling).
#: Command: python benchmarks/bench_tuning.py --only MIN_SHARD_BLOCKS
MIN_SHARD_BLOCKS = 16

#: Queries ranked at a time by ``score`` (:mod:`skdqn.search._scoring`) when
#: ``top_k`` is a small part of the database (otherwise the full sort's
#: block, :func:`skdqn.search._search.full_sort_block`).
#: Trades: memory for speed: the rankings of a chunk (``RANKING_CHUNK * top_k``
#: indices) are held at once; longer chunks mean fewer search calls.
#: Chosen: 4,096 (many query blocks per search call, rankings of a few MiB).
#: Command: python benchmarks/bench_tuning.py --only RANKING_CHUNK
RANKING_CHUNK = 4096

# ------------------------------------------------------------ numpy kernel (_scan, _kernels)

#: Calls of at most this many queries on enough uint8 codes (``PAIR_MIN_ROWS``)
#: are scanned one query at a time by pair look-ups (numpy kernel, and the
#: torch kernel on the CPU hands them to it).
#: Trades: speed only: the one-query pair scan does half the look-ups of the
#: batch scan but reads the codes once per query.
#: Chosen: 4 (one query on 10^6 codes: 25 ms by the torch batch scan, 5.7 ms
#: by the pair scan; measured at 10^6 codes, M = 8, one thread). Swept
#: (--quick, calls of 1-16 queries on 10^5 codes): 0/1/2/8/16 took
#: 1.53/1.77/1.09/1.03/1.40x the time of 4.
#: Command: python benchmarks/bench_tuning.py --only PAIR_QUERIES
PAIR_QUERIES = 4

#: The one-query pair scan is used from this many codes on
#: (:func:`skdqn.search._scan.uses_pairs`).
#: Trades: speed only: building the pair tables costs about 27 us, which the
#: saved look-ups repay only on enough codes.
#: Chosen: 4,096 (measured: the row gather is faster up to about 3,000 codes).
#: Swept (1 and 4 queries on 1,000-16,000 codes): 0/1,024/2,048/8,192/never
#: took 1.90/1.82/1.78/0.98/1.03x the time of 4,096.
#: Command: python benchmarks/bench_tuning.py --only PAIR_MIN_ROWS
PAIR_MIN_ROWS = 4096

#: The one-query pair scan sums ``PAIR_BLOCK_FACTOR * db_block`` codes per call.
#: Trades: memory for speed: the call's two uint16 buffers against numpy's
#: per-call cost (one query makes short rows).
#: Chosen: 16 (64 Ki codes, 256 KiB of buffers at ``DB_BLOCK = 4096``).
#: Swept (--quick, one query on 10^5 codes): 1/4/64 took 2.13/1.28/0.93x
#: the time of 16.
#: Command: python benchmarks/bench_tuning.py --only PAIR_BLOCK_FACTOR
PAIR_BLOCK_FACTOR = 16

#: Up to this depth, :func:`skdqn.search._ranking.stable_smallest` (the ranking of
#: the probed lists) takes one ``argmin`` per rank instead of a partition of
#: packed keys.
#: Trades: speed only: ``depth`` passes over the scores against one partition.
#: Chosen: 8 (1,000 x 1,024 coarse scores: 0.23, 0.41 and 0.84 ms at depth 2,
#: 4 and 8, against 10.7 ms for the packed-key partition). Swept (depths 2-64
#: of 1,000 x 1,024 scores): 16/32/64 took 0.78/0.50/0.36x the time of 8: on
#: this machine the argmin passes stay faster up to a depth of 64 at least,
#: so a larger value would serve ``n_probe`` 9-64 faster.
#: Command: python benchmarks/bench_tuning.py --only ARGMIN_DEPTH
ARGMIN_DEPTH = 8

#: Bound, in floats, on the temporaries of
#: :func:`skdqn.search._tables.distance_tables` (the lookup tables of the queries).
#: Trades: memory for speed: larger blocks mean fewer BLAS / ``cdist`` calls.
#: Chosen: 4 Mi floats (16 MiB as float32, 32 MiB as float64). Swept
#: (--quick, 200 queries, both metrics and layouts): 256 Ki/1 Mi/16 Mi took
#: 2.59/1.73/1.10x the time of 4 Mi.
#: Command: python benchmarks/bench_tuning.py --only TABLE_BLOCK_FLOATS
TABLE_BLOCK_FLOATS = 1 << 22

# ---------------------------------------------------------------------- torch kernel (_torch_kernel)

#: CUDA working memory of one torch task: a chunk of codes holds as many rows
#: as fit (``rows * (M * 8 + 2 * nq * 4)`` bytes), at least ``db_block``.
#: Trades: device memory for speed: longer chunks mean fewer kernel launches
#: and host copies.
#: Chosen: 256 MiB (a small part of any CUDA device; launches amortised).
#: Command: python benchmarks/bench_tuning.py --only TORCH_DEVICE_BYTES (needs CUDA)
TORCH_DEVICE_BYTES = 256 * 2**20

#: CPU working memory of one torch task (as ``TORCH_DEVICE_BYTES``, on the CPU).
#: Trades: memory for speed: the chunk's sums should stay in the cache.
#: Chosen: 8 MiB, so that the working set stays in cache.
#: Command: python benchmarks/bench_tuning.py --only TORCH_CPU_BYTES
TORCH_CPU_BYTES = 8 * 2**20

#: Rows whose minimum (per query) the CPU torch scan takes at once to find its
#: candidates (:func:`skdqn.search._torch_kernel._below_by_groups`): only the groups
#: whose minimum is below the threshold are compared.
#: Trades: speed only: small groups compare fewer rows per hit, large ones
#: reduce faster.
#: Chosen: 64 (several times faster than comparing every sum once the
#: running k-th is tight).
#: Command: python benchmarks/bench_tuning.py --only TORCH_GROUP_ROWS
TORCH_GROUP_ROWS = 64

# ------------------------------------------------------------------- inverted lists (_ivf, _csr)

#: An inverted-list task holds up to ``IVF_BLOCK_FACTOR * ScanBlocks.query``
#: queries (within ``IVF_TABLE_FLOATS``), so that each probed list is scanned
#: once for many queries.
#: Trades: memory (the tables of the task's queries) for speed (more queries
#: per probed list, fewer passes over the codes).
#: Chosen: 8 (1,024 queries at ``QUERY_BLOCK = 128``).
#: Command: python benchmarks/bench_tuning.py --only IVF_BLOCK_FACTOR
IVF_BLOCK_FACTOR = 8

#: Bound, in floats, on the lookup tables of one inverted-list task.
#: Trades: memory for speed, as ``IVF_BLOCK_FACTOR``.
#: Chosen: 2 Mi floats (8 MiB; 1,024 queries at M = 8, K = 256).
#: Command: python benchmarks/bench_tuning.py --only IVF_TABLE_FLOATS
IVF_TABLE_FLOATS = 1 << 21

#: Coarse scores ranked at a time when probing (``PROBE_FLOATS // n_lists``
#: queries), so their memory does not grow with the number of lists.
#: Trades: memory for speed (fewer, larger rankings).
#: Chosen: 256 Ki floats (1 MiB of float32).
#: Command: python benchmarks/bench_tuning.py --only PROBE_FLOATS
PROBE_FLOATS = 1 << 18

#: The k-th smallest of the first ``max(k, BOUND_SAMPLE)`` distances of a
#: (query, list) pair bounds the candidates a chunk of narrow lists keeps.
#: Trades: speed only: a longer sample gives a tighter bound (fewer
#: candidates to rank) and costs a partition of that length per pair.
#: Chosen: 256.
#: Command: python benchmarks/bench_tuning.py --only BOUND_SAMPLE
BOUND_SAMPLE = 256

#: A list probed by at most this many queries of a task is summed query by
#: query into flat chunks (each (query, list) pair one contiguous run); a
#: list probed by more is summed once for all of them.
#: Trades: speed only: per-pair runs skip the gather of the queries' tables,
#: a wide list reads its codes once for many queries.
#: Chosen: 8, with the CSR list scan that introduced the split (inverted
#: lists 1.2-2.1x faster at 10^6 items, 1,024 lists). Swept (10^6 codes,
#: 1,024 lists of random assignment, ``n_probe`` 1, 8 and 32, 1,000 queries,
#: a shared machine): 0/2/4/16/32 took 0.95/0.82/1.11/0.81/1.07x the time of
#: 8, no trend beyond the noise.
#: Command: python benchmarks/bench_tuning.py --only NARROW
NARROW = 8

#: A wide list probed by at most this many queries takes their tables as rows
#: of the query-major copy, transposed; a wider one takes columns of the
#: ``(M * K, nq)`` tables computed again in the scan's layout.
#: Trades: speed only: the row copy is fast for few queries; computing the
#: scan-layout tables once (about 6 ms for 1,000 queries) beats transposing
#: for many.
#: Chosen: 160 (the column gather of the ``(M * K, nq)`` layout took 40 % of
#: the search at ``n_probe=4``; taking rows made it 1.10-1.28x faster at
#: ``n_probe`` 1-8). Swept (as ``NARROW``): 0/40/80/320/always took
#: 1.12/0.92/0.96/1.08/1.08x the time of 160.
#: Command: python benchmarks/bench_tuning.py --only ROWS_MAX_WIDTH
ROWS_MAX_WIDTH = 160

#: Table entries the compiled CSR list sums take per call at most
#: (:func:`skdqn.search._csr.rows_per_call`: ``CALL_ENTRIES // M`` rows).
#: Trades: speed: a call's indices should stay in the cache; longer calls
#: amortise the call.
#: Chosen: 256 Ki entries (1 MiB of int32 indices).
#: Command: python benchmarks/bench_tuning.py --only CALL_ENTRIES
CALL_ENTRIES = 1 << 18

# ------------------------------------------------------------------------ metrics (skdqn.metrics)

#: The blocks of queries :mod:`skdqn.metrics` processes at once take
#: ``working_memory / METRICS_MEMORY_DIVISOR`` (all workers together).
#: Trades: memory for speed (fewer, larger blocks).
#: Chosen: 16 (64 MiB of sklearn's default 1,024 MiB).
#: Command: python benchmarks/bench_tuning.py --only METRICS_MEMORY_DIVISOR
METRICS_MEMORY_DIVISOR = 16

#: Working memory assumed per ranked item by :mod:`skdqn.metrics` (sort keys,
#: gathered labels, relevance, hit positions), in bytes, besides the label
#: code itself.
#: Trades: memory for speed: a smaller value makes larger blocks.
#: Chosen: 32, the bytes those arrays take per item.
#: Command: python benchmarks/bench_tuning.py --only METRICS_BYTES_PER_ITEM
METRICS_BYTES_PER_ITEM = 32

#: Ranking entries sorted at a time when :mod:`skdqn.metrics` checks that no
#: ranking row repeats an item.
#: Trades: memory (a sorted copy of the block) for speed.
#: Chosen: 4 Mi entries (32 MiB of int64).
#: Command: python benchmarks/bench_tuning.py --only DUPLICATE_CHECK_ITEMS
DUPLICATE_CHECK_ITEMS = 1 << 22


# ------------------------------------------------------------ items as queries, re-ranking (_neighbors, _refine)

#: Stored items searched at a time by ``kneighbors(X=None)`` (each chunk's
#: result written into the output, then the next).
#: Trades: memory for speed: a chunk holds its own top-k and its tables
#: (``SELF_CHUNK * M * K`` floats only block by block); fewer, longer calls
#: amortise the per-call set-up (the plan, the kernel's tables).
#: Chosen: 32,768 (results of a chunk: a few MiB at k = 10; the output, not
#: the chunk, dominates the memory of X=None); not swept until measured:
#: ``bench_tuning.py --only SELF_CHUNK`` times X=None on 10^5 items.
#: Command: python benchmarks/bench_tuning.py --only SELF_CHUNK
SELF_CHUNK = 1 << 15

#: Query-candidate-dimension floats gathered at a time by the re-ranking
#: (``skdqn.search._refine.exact_distances``: the candidates' vectors of a block
#: of queries, in float64).
#: Trades: memory for speed: ``8 * REFINE_CANDIDATE_FLOATS`` bytes per
#: block; larger blocks make fewer, longer numpy calls.
#: Chosen: 2^22 (32 MiB of float64): a block of 1,000 queries x 100
#: candidates x 64 dimensions at once.
#: Command: python benchmarks/bench_tuning.py --only REFINE_CANDIDATE_FLOATS
REFINE_CANDIDATE_FLOATS = 1 << 22
