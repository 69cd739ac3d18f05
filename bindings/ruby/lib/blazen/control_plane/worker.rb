# frozen_string_literal: true

module Blazen
  module ControlPlane
    class Worker; end

    # The run an assignment belongs to, passed to a handler that takes two
    # arguments (`|assignment, ctx|`). Valid only during that handler call.
    # Its name is `Worker::AssignmentContext`, as in the v0.6.x gem;
    # `ControlPlane::AssignmentContext` is the same class.
    class Worker::AssignmentContext
      S = FFISupport
      private_constant :S

      # @api private
      def initialize(ptr)
        @ptr = ptr
      end

      # @return [String] the run's id
      def run_id = S.take_string(Native.blazen_assignment_context_run_id(ptr))

      # @return [Integer] which attempt at the run this is
      def attempt = Native.blazen_assignment_context_attempt(ptr)

      # @return [Boolean] true once the run is cancelled; the handler should return
      def cancelled? = Native.blazen_assignment_context_is_cancelled(ptr)

      # Emits an event on the run, to its subscribers.
      # @param event_type [String]
      # @param data [Object] any JSON-able value (nil: JSON null)
      # @return [nil]
      def emit_event(event_type, data = nil)
        S.call_status { |e| Native.blazen_assignment_context_emit_event(ptr, event_type, S.json(data), e) }
      end

      # Asks the orchestrator for input (an `input.request` event) and
      # waits for {Client#respond_to_input}, the run's cancellation or the timeout.
      # @param prompt [String]
      # @param metadata [Object] any JSON-able value (nil: JSON null)
      # @param timeout_ms [Integer, nil] nil or 0: no limit
      # @return [Object] the parsed answer
      # @raise [Blazen::TimeoutError] when the limit is reached
      def request_input(prompt, metadata = nil, timeout_ms: nil)
        answer = S.call_out do |o, e|
          Native.blazen_assignment_context_request_input_blocking(ptr, prompt, S.json(metadata), timeout_ms || 0, o, e)
        end
        S.parse(S.take_string(answer))
      end

      # @api private
      def invalidate
        @ptr = nil
      end

      private

      def ptr
        @ptr or raise ArgumentError, "the assignment context is only valid during the handler call"
      end
    end

    AssignmentContext = Worker::AssignmentContext

    # A worker that serves assignments with a Ruby block or handler object.
    # `shutdown` and garbage collection return at once even while a handler
    # runs (its result is then discarded and the control plane re-queues the run).
    class Worker
      include OwnedHandle
      S = FFISupport
      private_constant :S

      # Admission modes by the symbols `admission:` takes (:fixed,
      # :vram_budget, :reactive), from the library's table.
      ADMISSION = Native::ADMISSION_MODES.values.to_h do |text|
        [text.gsub(/(?<!\A)([A-Z])/, '_\1').downcase.to_sym, text]
      end.freeze
      private_constant :ADMISSION

      # What the library calls. @api private
      class Target
        def initialize(handler, wants_context)
          @handler = handler
          @wants_context = wants_context
        end

        def handle(ctx_ptr, run_id, workflow, input, out_json, out_err)
          assignment = { run_id: run_id.dup, workflow_name: workflow.dup, input: JSON.parse(input) }
          ctx = AssignmentContext.new(ctx_ptr)
          result = @wants_context ? @handler.handle(assignment, ctx) : @handler.handle(assignment)
          out_json.write_pointer(Native.blazen_string_alloc(JSON.generate(result)))
          0
        rescue Exception => e # rubocop:disable Lint/RescueException
          out_err.write_pointer(S.error_for(e))
          1
        ensure
          ctx&.invalidate
        end

        def cancel(run_id)
          @handler.on_cancel(run_id.dup) if @handler.respond_to?(:on_cancel)
        end

        def drain(immediate)
          @handler.on_drain(immediate) if @handler.respond_to?(:on_drain)
        end

        def released; end
      end

      # A block as a handler object.
      # @api private
      BlockHandler = Struct.new(:block) do
        def handle(*args) = block.call(*args)
      end

      HANDLE = FFI::Function.new(:int32, %i[pointer pointer string string string pointer pointer]) do
        |ud, ctx, run_id, workflow, input, out_json, out_err|
        target = S.lookup(ud)
        S.guard(target, 1) { target.handle(ctx, run_id, workflow, input, out_json, out_err) }
      end
      ON_CANCEL = FFI::Function.new(:void, %i[pointer string]) do |ud, run_id|
        target = S.lookup(ud)
        S.guard(target) { target&.cancel(run_id) }
      end
      ON_DRAIN = FFI::Function.new(:void, %i[pointer bool]) do |ud, immediate|
        target = S.lookup(ud)
        S.guard(target) { target&.drain(immediate) }
      end

      # Creates a worker (it connects when run).
      # @param endpoint [String] the control plane, "http://host:port"
      # @param node_id [String] this worker's name
      # @param capabilities [Array<Hash>] `{kind: "workflow:NAME", version: 0}`
      # @param tags [Hash{String=>String}]
      # @param admission [Symbol] `:fixed`, `:vram_budget` or `:reactive`
      # @param admission_param [Integer] max in flight (`:fixed`, 0 means 1) or max VRAM MiB
      # @param mtls [Hash, nil] `{cert_path:, key_path:, ca_path:}`
      # @param handler [#handle, nil] an object with `handle(assignment)` (or
      #   `handle(assignment, ctx)`), optionally `on_cancel(run_id)` and `on_drain(immediate)`
      # @param options [Hash] `bearer_token:`, `labels:`, `heartbeat_ms:`,
      #   `retry:` (`{max_attempts:, initial_backoff_ms:, max_backoff_ms:}`)
      # @yieldparam assignment [Hash] `run_id`, `workflow_name`, `input`
      # @yieldparam ctx [AssignmentContext] when the block takes two arguments
      # @yieldreturn [Object] the run's output (JSON-able)
      # @raise [ArgumentError] unless exactly one of `handler:` and a block is given
      def initialize(endpoint:, node_id:, capabilities: [], tags: {}, admission: :fixed, admission_param: 0,
                     mtls: nil, handler: nil, **options, &block)
        raise ArgumentError, "give a handler: or a block, not both" if handler && block
        raise ArgumentError, "a worker needs a handler: or a block" unless handler || block

        ControlPlane.ensure_available!
        handler ||= BlockHandler.new(block)
        arity = handler.is_a?(BlockHandler) ? block.arity : handler.method(:handle).arity
        target = Target.new(handler, arity == 2 || arity < -1)
        opts = worker_options(capabilities, tags, admission, admission_param, mtls, options)
        vt = Native::BlazenContextHandlerVTable.new
        vt[:user_data] = S.register(target)
        vt[:drop_user_data] = S::DROP_USER_DATA
        vt[:handle] = HANDLE
        vt[:on_cancel] = ON_CANCEL
        vt[:on_drain] = ON_DRAIN
        adopt(S.call_out do |o, e|
          Native.blazen_controlplane_worker_new_with_options_blocking(endpoint, node_id, S.json(opts), vt, o, e)
        end, :blazen_controlplane_worker_free)
        @node_id = node_id
      end

      # As {#initialize} with mutual TLS from PEM files.
      # @return [Worker]
      def self.new_with_mtls(cert_path:, key_path:, ca_path:, **kwargs, &block)
        new(**kwargs, mtls: { cert_path: cert_path, key_path: key_path, ca_path: ca_path }, &block)
      end

      # @return [String]
      attr_reader :node_id

      # Serves assignments until {#shutdown} or a drain (Fiber-scheduler aware).
      # @return [nil]
      # @raise [Blazen::Error] when the worker cannot connect or is refused
      def run
        S.await(Native.blazen_controlplane_worker_run(ptr), :blazen_future_take_unit)
      end

      # As {#run}, through the blocking entry point.
      # @return [nil]
      def run_blocking
        S.call_status { |e| Native.blazen_controlplane_worker_run_blocking(ptr, e) }
      end

      # Stops the worker; idempotent; returns at once.
      # @return [nil]
      def shutdown
        Native.blazen_controlplane_worker_shutdown(@ptr) if @ptr
        nil
      end

      private

      def worker_options(capabilities, tags, admission, param, mtls, options)
        mode = ADMISSION.fetch(admission) do
          raise ValidationError, "admission: #{admission.inspect} is not one of #{ADMISSION.keys.inspect}"
        end
        adm = { "mode" => mode }
        adm["max_in_flight"] = [param, 1].max if admission == :fixed # 0 means 1, as in worker_new
        adm["max_vram_mb"] = param if admission == :vram_budget
        opts = { "capabilities" => capabilities, "tags" => tags, "admission" => adm }
        opts.merge!(mtls.transform_keys(&:to_s)) if mtls
        opts.merge(options.transform_keys(&:to_s))
      end
    end
  end
end
