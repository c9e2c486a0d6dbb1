"""atari-dqn: Deep Q-Network agents for Atari, Breakout first."""

__version__ = "0.1.0"
