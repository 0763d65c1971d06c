# A peer that never answers.
exec sleep 600
