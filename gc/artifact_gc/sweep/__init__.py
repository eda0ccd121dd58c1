"""The sweep: carry out a manifest, re-verified against the live store, in journaled batches.

    options.py   SweepOptions and the modes (all, only-artifact, only-metadata)
    plan.py      plan_sweep -> SweepPlan: refuse a manifest or read what is left to do
    execute.py   execute(plan) -> SweepReport: the one batch loop
    batch.py     one batch: the root fence, the live database's verdict, its journal events
    effects.py   what a batch does to the world (journal, locked database step, files);
                 the dry run is another implementation of it
    rows.py      the cascade of row deletes, driven by the discovered schema
    verify.py    re-verification of a batch against the live database
    journal.py   the journal: durable segments, and the item state (sweep_state.sql)
    lock.py      one sweep of a manifest at a time; who holds the lock, read without taking it
    report.py    SweepReport: what a sweep did, counted once
    status.py    sweep_status (gc status), a read that never takes the lock
    hooks.py     SweepHooks: kill/pause points and phase timing, injected by tests
"""
