# frozen_string_literal: true

module Blazen
  module ControlPlane
    # An orchestrator's connection to a control plane. Safe to share between
    # threads. Every call that waits goes through the library's future entry
    # point: under a Fiber scheduler it yields to other fibers, otherwise it
    # blocks the calling thread with the VM lock released.
    class Client
      include OwnedHandle
      S = FFISupport
      private_constant :S

      class << self
        # Connects to the control plane at `endpoint` ("http://host:port").
        # With options, as {connect_with_options}.
        # @param endpoint [String]
        # @param options [Hash] `bearer_token:`, `cert_path:`, `key_path:`, `ca_path:`, `connect_timeout_ms:`, `connections:` (1 to 64, default 8)
        # @return [Client]
        # @raise [Blazen::PeerError] when it cannot connect
        def connect(endpoint, **options)
          options.delete(:bearer_token) if options[:bearer_token].nil?
          return connect_with_options(endpoint, **options) unless options.empty?

          ControlPlane.ensure_available!
          new(S.await(Native.blazen_controlplane_client_connect(*S.surface_args(endpoint)),
                      :blazen_future_take_controlplane_client))
        end

        # As {connect}, through the blocking entry point.
        # @param endpoint [String]
        # @param bearer_token [String, nil] sent on every call
        # @return [Client]
        def connect_blocking(endpoint, bearer_token: nil)
          ControlPlane.ensure_available!
          return connect_with_options_blocking(endpoint, bearer_token: bearer_token) if bearer_token

          new(S.call_out { |o, e| Native.blazen_controlplane_client_connect_blocking(*S.surface_args(endpoint), o, e) })
        end

        # Connects over mutual TLS with PEM files.
        # @param endpoint [String]
        # @param cert_path [String] @param key_path [String] @param ca_path [String]
        # @param bearer_token [String, nil] sent on every call
        # @return [Client]
        def connect_with_mtls(endpoint, cert_path:, key_path:, ca_path:, bearer_token: nil)
          tls = { cert_path: cert_path, key_path: key_path, ca_path: ca_path }
          return connect_with_options(endpoint, **tls, bearer_token: bearer_token) if bearer_token

          ControlPlane.ensure_available!
          new(S.await(Native.blazen_controlplane_client_connect_with_mtls(*S.surface_args(endpoint, *tls.values)),
                      :blazen_future_take_controlplane_client))
        end

        # As {connect_with_mtls}, through the blocking entry point.
        # @return [Client]
        def connect_with_mtls_blocking(endpoint, cert_path:, key_path:, ca_path:, bearer_token: nil)
          ControlPlane.ensure_available!
          tls = { cert_path: cert_path, key_path: key_path, ca_path: ca_path }
          return connect_with_options_blocking(endpoint, **tls, bearer_token: bearer_token) if bearer_token

          new(S.call_out do |o, e|
            Native.blazen_controlplane_client_connect_with_mtls_blocking(*S.surface_args(endpoint, *tls.values), o, e)
          end)
        end

        # As {connect_with_options}, through the blocking entry point.
        # @return [Client]
        def connect_with_options_blocking(endpoint, **options)
          ControlPlane.ensure_available!
          new(S.call_out do |o, e|
            Native.blazen_controlplane_client_connect_with_options_blocking(endpoint, S.json(options), o, e)
          end)
        end

        # Connects with a bearer token, mutual TLS, a connect timeout and/or a connection count.
        # @param endpoint [String]
        # @param options [Hash] `bearer_token:`, `cert_path:`, `key_path:`, `ca_path:`, `connect_timeout_ms:`, `connections:` (1 to 64, default 8)
        # @return [Client]
        # @raise [Blazen::ValidationError] for an unknown option
        def connect_with_options(endpoint, **options)
          ControlPlane.ensure_available!
          new(S.await(Native.blazen_controlplane_client_connect_with_options(endpoint, S.json(options)),
                      :blazen_future_take_controlplane_client))
        end
      end

      # @api private
      def initialize(ptr)
        adopt(ptr, :blazen_controlplane_client_free)
      end

      # Submits a run and returns its snapshot.
      # @param workflow_name [String]
      # @param input [Object] any JSON-able value
      # @param required_tags [Array<String>] "key=value" tags a worker must have
      # @param wait_for_worker [Boolean] queue the run when no worker can take it now
      # @param options [Hash] `workflow_version:`, `idempotency_key:`, `deadline_ms:`, `resource_hint:`
      # @return [Hash] the run snapshot
      def submit_workflow(workflow_name:, input: nil, required_tags: [], wait_for_worker: true, **options)
        tags = S.json(required_tags)
        fut = if options.empty?
                Native.blazen_controlplane_client_submit_workflow(ptr, workflow_name, S.json(input), tags,
                                                                  wait_for_worker)
              else
                Native.blazen_controlplane_client_submit_workflow_with_options(
                  ptr, workflow_name, S.json(input), tags, wait_for_worker, S.json(options)
                )
              end
        Records.snapshot(S.await(fut, :blazen_future_take_run_state_snapshot))
      end

      # Cancels a run.
      # @param run_id [String]
      # @return [Hash] the run snapshot
      def cancel_workflow(run_id)
        Records.snapshot(S.await(Native.blazen_controlplane_client_cancel_workflow(ptr, run_id),
                                 :blazen_future_take_run_state_snapshot))
      end

      # Describes a run.
      # @param run_id [String]
      # @return [Hash] the run snapshot
      def describe_workflow(run_id)
        Records.snapshot(S.await(Native.blazen_controlplane_client_describe_workflow(ptr, run_id),
                                 :blazen_future_take_run_state_snapshot))
      end

      # The connected workers.
      # @return [Array<Hash>] worker-info Hashes
      def list_workers
        Records.worker_list(S.await(Native.blazen_controlplane_client_list_workers(ptr),
                                    :blazen_future_take_worker_info_list))
      end

      # Asks a worker to drain (stop taking work; `immediate` also cancels its runs).
      # @param node_id [String]
      # @param immediate [Boolean]
      # @return [nil]
      def drain_worker(node_id, immediate: false)
        S.await(Native.blazen_controlplane_client_drain_worker(ptr, node_id, immediate), :blazen_future_take_unit)
      end

      # Answers a handler's `input.request` event.
      # @param run_id [String]
      # @param request_id [String] from the event's data
      # @param response [Object] any JSON-able value
      # @return [nil]
      def respond_to_input(run_id, request_id, response)
        S.await(Native.blazen_controlplane_client_respond_to_input(ptr, run_id, request_id, S.json(response)),
                :blazen_future_take_unit)
      end

      # Streams a run's events into the block (on a library thread) until
      # the run ends. An exception in the block is reported and the stream goes on.
      # @param run_id [String]
      # @yieldparam event [Hash] `run_id`, `event_type`, `data`, `timestamp_ms`
      # @return [Subscription]
      # @raise [ArgumentError] without a block
      def subscribe_run_events(run_id, &block)
        raise ArgumentError, "subscribe_run_events needs a block" unless block

        Subscription.open(block) do |vt, o, e|
          Native.blazen_controlplane_client_subscribe_run_events(ptr, run_id, vt, o, e)
        end
      end

      # Streams the events of every run whose tags match into the block.
      # @param required_tags [Array<String>] "key=value"
      # @yieldparam event [Hash]
      # @return [Subscription]
      # @raise [ArgumentError] without a block
      def subscribe_all(required_tags: [], &block)
        raise ArgumentError, "subscribe_all needs a block" unless block

        tags = S.json(required_tags)
        Subscription.open(block) do |vt, o, e|
          Native.blazen_controlplane_client_subscribe_all(ptr, tags, vt, o, e)
        end
      end

      # An Enumerator over a run's events until its terminal `status.*` event
      # (included): from this library's embedded control plane, starting with
      # what the run has emitted so far (so enumerating right after
      # {#submit_workflow} misses nothing); from another, from now on. The
      # subscription is closed when the enumeration ends or is abandoned.
      # @param run_id [String]
      # @return [Enumerator<Hash>]
      def run_events(run_id)
        Enumerator.new do |y|
          queue = Queue.new
          sub = subscribe_run_events(run_id) { |ev| queue << ev }
          sub.on_end { |error| queue << (error || :closed) }
          begin
            loop do
              item = queue.pop
              break if item == :closed
              raise item if item.is_a?(Exception)

              y << item
              break if TERMINAL_EVENTS.include?(item[:event_type])
            end
          ensure
            sub.close
          end
        end
      end

    end
  end
end
