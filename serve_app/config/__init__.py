"""Settings, declared once (env prefix EMOTION_MONITOR_), and defaults shared by layers."""
