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

    # Run statuses as the symbols records use.
    STATUS_NAMES = { PENDING => :pending, RUNNING => :running, COMPLETED => :completed,
                     FAILED => :failed, CANCELLED => :cancelled }.freeze

    # Event types that end a run's event stream.
    TERMINAL_EVENTS = %w[status.completed status.failed status.cancelled].freeze

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
