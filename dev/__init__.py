"""Development and test helpers that are not part of prefkit (not in the wheel: pyproject's
package list leaves `dev` out). Importable from a checkout: the tests put the repository on the
path (`pythonpath` in pyproject), the bench scripts insert it themselves."""
