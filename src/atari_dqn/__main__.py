from atari_dqn.cli import main

raise SystemExit(main())
