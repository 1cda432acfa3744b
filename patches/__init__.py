"""The shipped patch and decorator library, loaded by dotted or short name (see docs/patching.md).

Every patch here is a decorator. Output goes to ``sys.stdout``, which shellsvc routes to
the session whose code made the call, so an operator sees their own trace and timings.

Short names (also accepted: every name in a module's ``__all__``; admins add their own by
dropping modules into a patch directory, see :class:`shellsvc.patching.PatchResolver`)::

    tracer     patches.trace.tracer        executed lines, their source, changed locals
    timer      patches.timer.timer         wall-clock duration of each call
    log_args   patches.args.log_args       arguments and return value of each call
    source     patches.source.show_source  the source of the function before it runs
    benchmark  patches.bench.benchmark     timeit measurement of the call
    counter    patches.counter.count_calls running count of calls
"""

SHORT_NAMES = {
    "tracer": "patches.trace.tracer",
    "trace": "patches.trace.tracer",
    "timer": "patches.timer.timer",
    "log_args": "patches.args.log_args",
    "args": "patches.args.log_args",
    "source": "patches.source.show_source",
    "show_source": "patches.source.show_source",
    "benchmark": "patches.bench.benchmark",
    "bench": "patches.bench.benchmark",
    "counter": "patches.counter.count_calls",
    "count_calls": "patches.counter.count_calls",
}
