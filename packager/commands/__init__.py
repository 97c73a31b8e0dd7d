"""CLI command functions; packager.cli registers them."""

PROFILE_HELP = ("Pin one of the plan's compatible profiles instead of the planner's first "
                "(NIM's NIM_MODEL_PROFILE); `packager profiles` lists them.")
