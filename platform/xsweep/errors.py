"""The one base class for problems a user can fix: the CLI prints the line and exits with 2.

Kept import-free so that every module, the fast spec checker included, can use it.
"""


class UserError(Exception):
    """A problem the user can fix; str(error) is one line per problem naming the field and the fix."""

    # Printed before the message; spec errors start with the file name instead.
    prefix = "xsweep: "
