"""`python -m record` and `torchrun --nproc_per_node=N -m record`: run the record program (record.train.main)."""

import sys

from record.train import main

if __name__ == "__main__":
    sys.exit(main())
