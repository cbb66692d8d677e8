import sys

from instance_benchmarks.agent.main import main

sys.exit(main())
