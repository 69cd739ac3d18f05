# frozen_string_literal: true

module Blazen
  # A failure reported by the library. One subclass per error kind
  # (`Blazen::ValidationError`, `Blazen::PeerError`, ...), made from the
  # library's `ERROR_KIND_*` constants so the two lists cannot drift.
  class Error < StandardError
    # @return [Integer] the library's error kind number
    attr_reader :kind_code
    # @return [String, nil] the cause within the kind, e.g. "ControlPlaneNotFound"
    attr_reader :subkind

    # @param message [String] the library's message
    # @param subkind [String, nil] the cause within the kind
    # @param details [Hash] kind-specific fields (`retry_after_ms`, `elapsed_ms`)
    def initialize(message = nil, subkind: nil, **details)
      super(message)
      @kind_code = self.class.const_defined?(:KIND, false) ? self.class::KIND : nil
      @subkind = subkind
      @details = details
    end

    # @return [Hash] kind-specific fields
    attr_reader :details

    # The subclass for a kind number (`Blazen::Error` for an unknown one).
    # @param code [Integer]
    # @return [Class]
    def self.for_kind(code)
      BY_KIND.fetch(code, Error)
    end

    # The name `blazen_error_from_json` reads for a kind number ("Timeout",
    # "CallerError", ...), from the library's generated `ERROR_KINDS`; nil
    # for an unknown one.
    # @param code [Integer]
    # @return [String, nil]
    def self.json_kind(code)
      Native::ERROR_KINDS[code]
    end

    BY_KIND = {} # :nodoc:
  end

  Native.constants.grep(/\AERROR_KIND_/).sort.each do |name|
    code = Native.const_get(name)
    words = name.to_s.delete_prefix("ERROR_KIND_").split("_")
    klass = Class.new(Error)
    klass.const_set(:KIND, code)
    const_set("#{words.map(&:capitalize).join}Error", klass)
    Error::BY_KIND[code] = klass
  end

  # A rate limit; `retry_after_ms` says when to try again (nil if unknown).
  class RateLimitError
    # @return [Integer, nil]
    def retry_after_ms = details[:retry_after_ms]
  end

  # A timeout; `elapsed_ms` is how long the operation ran.
  class TimeoutError
    # @return [Integer, nil]
    def elapsed_ms = details[:elapsed_ms]
  end

  # The control plane failed or could not be reached.
  class PeerError
    # The cause (`ControlPlaneNotFound`, `ControlPlaneTransport`, ...), as
    # the published gem names it.
    # @return [String, nil]
    def kind = subkind
  end
end
