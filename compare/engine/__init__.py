"""First in a check: the engine under test, loaded and probed in a process of its own.

    process.py    EngineProcess: starts that process, reads its messages, sets its time limits
    sandbox.py    the process itself: started, limited, and ended as a whole
    confine.py    inside it, before the engine's code runs: shut it in
    own_files.py  the checker's files, read before any engine runs
    worker.py     the process's main: load the engine, then run it through the runner
    loader.py     a learner's Value class loaded from a file (statements.py: one statement at a time)
    faults.py     the catalogue of typical mistakes, written into the project's engine
    runner.py     ScalarRunner: probes, depth, steps and finite differences, the same anywhere
    probes.py     each operation alone, at points where the classic mistakes show
    depth.py      how deep a graph backward walks, and how deep the model's graph is
    protocol.py   the messages between the checker and the engine's process
    reader.py     those messages read in the checker, or the runner's, for a class run here
"""
