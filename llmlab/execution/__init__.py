"""Running untrusted generated code: one sandboxed process per sample (`sandbox`), and the pass@k
estimator (`passk`). One idea per module; tasks that execute code (OOP, HumanEval/MBPP-format files)
import from here."""
