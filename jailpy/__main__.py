"""`python -m jailpy`"""

from jailpy.entry import main

main()
