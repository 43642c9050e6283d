"""``python -m`` on this package: it is not a command; say which modules are."""

from gcnn_spin.errors import not_a_command

not_a_command(__spec__.parent)
