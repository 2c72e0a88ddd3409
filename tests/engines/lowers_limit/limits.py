"""A helper module that lowers Python's recursion limit when it is imported."""
import sys

sys.setrecursionlimit(120)
