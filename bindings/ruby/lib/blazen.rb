# frozen_string_literal: true

# Blazen's distributed control plane for Ruby: `Blazen::ControlPlane::Client`,
# `Worker`, `Subscription` and an embedded `Server`, on the blazen-cabi C
# library (the copy bundled with this gem, or the file named by
# `BLAZEN_CABI_LIB`).
module Blazen
end

require_relative "blazen/native"
require_relative "blazen/errors"
require_relative "blazen/control_plane"
