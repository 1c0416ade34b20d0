"""`python -m jailpy`"""

from jailpy.cli import main

main()
