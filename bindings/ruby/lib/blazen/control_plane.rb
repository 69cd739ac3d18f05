# frozen_string_literal: true

require "json"
require "io/wait"

module Blazen
  # The distributed control plane: orchestrate runs with {Client}, serve
  # them with {Worker}, watch them with {Subscription}, or host one in this
  # process with {Server}.
  module ControlPlane
    PENDING = Native::RUN_STATUS_PENDING
    RUNNING = Native::RUN_STATUS_RUNNING
    COMPLETED = Native::RUN_STATUS_COMPLETED
    FAILED = Native::RUN_STATUS_FAILED
    CANCELLED = Native::RUN_STATUS_CANCELLED

    # Run statuses as the symbols records use (from the library's table).
    STATUS_NAMES = Native::RUN_STATUSES.to_h { |code, text| [code, text.downcase.to_sym] }.freeze

    # Event types that end a run's event stream.
    TERMINAL_EVENTS = [Native::EVENT_STATUS_COMPLETED, Native::EVENT_STATUS_FAILED,
                       Native::EVENT_STATUS_CANCELLED].freeze

    # True when the library is loaded and has every control-plane function.
    # @return [Boolean]
    def self.available?
      Native.load_problem.nil?
    end

    # Raises {Blazen::UnsupportedError} unless {available?}.
    # @return [void]
    def self.ensure_available!
      problem = Native.load_problem
      raise UnsupportedError, "the Blazen control plane is unavailable: #{problem}" if problem
    end
  end
end

require_relative "control_plane/ffi_support"
require_relative "control_plane/records"
require_relative "control_plane/client"
require_relative "control_plane/subscription"
require_relative "control_plane/worker"
require_relative "control_plane/server"
